"""Converters for tensor factories (full, zeros, empty, arange, scalar_tensor, *_like) and
the triangle/scan ops built on positions (tril, triu, cumsum)."""

from __future__ import annotations

from typing import Any

import sympy
import torch

from ember.frontend.torch.context import Context
from ember.frontend.torch.registry import converter
from ember.ir import Value
from ember.ir.ops import Arange, Expand, Full
from ember.ir.ops._shapes import norm_axis
from ember.ir.ops.index import CumSum, Trilu

aten = torch.ops.aten


def _fill(cx: Context, value: Any) -> Value:
    dtype = cx.out_dtype()
    shape = cx.out_shape()
    if isinstance(value, sympy.Expr) and not value.is_number:
        scalar = cx.const(value, dtype)
        return scalar if not shape else cx.emit(Expand(shape), scalar)
    value = (
        bool(value) if dtype.value == "bool" else (float(value) if dtype.is_float else int(value))
    )
    return cx.emit(Full(shape, value, dtype))


@converter(aten.full.default, aten.new_full.default)
def _full(cx: Context, *args: Any, **_: Any) -> Value:
    return _fill(cx, args[-1])


@converter(aten.full_like.default)
def _full_like(cx: Context, x: Value, value: Any, **_: Any) -> Value:
    return _fill(cx, value)


@converter(
    aten.zeros.default,
    aten.zeros_like.default,
    aten.new_zeros.default,
    aten.empty.memory_format,
    aten.empty_like.default,
    aten.empty_permuted.default,
    aten.new_empty.default,
    aten.empty_strided.default,
)
def _zeros(cx: Context, *_: Any, **__: Any) -> Value:
    """Zeros; also for `empty`, whose contents are unspecified (zeros are one valid choice)."""
    return _fill(cx, 0)


@converter(aten.ones.default, aten.ones_like.default, aten.new_ones.default)
def _ones(cx: Context, *_: Any, **__: Any) -> Value:
    return _fill(cx, 1)


@converter(aten.scalar_tensor.default)
def _scalar_tensor(cx: Context, value: Any, **_: Any) -> Value:
    return cx.const(value, cx.out_dtype())


@converter(aten.arange.default, aten.arange.start, aten.arange.start_step)
def _arange(cx: Context, *args: Any, **_: Any) -> Value:
    start, end, step = (
        (0, args[0], 1) if len(args) == 1 else (*args[:2], args[2] if len(args) > 2 else 1)
    )
    if isinstance(start, sympy.Expr) and start.is_number:
        start = int(start)
    return cx.emit(Arange(start, end, step, cx.out_dtype()))


@converter(aten.tril.default, aten.triu.default)
def _trilu(cx: Context, x: Value, diagonal: int = 0) -> Value:
    return cx.emit(Trilu(upper=cx.node.target is aten.triu.default, k=diagonal), x)


@converter(aten.cumsum.default)
def _cumsum(cx: Context, x: Value, dim: int, dtype: Any = None) -> Value:
    axis = norm_axis("cumsum", dim, x.type.rank)
    return cx.emit(CumSum(axis), cx.cast(x, cx.out_dtype()))
