"""Converters for reductions: sum, mean, amax/amin, max/min (values and indices), prod,
argmax/argmin, var/std, any/all, logsumexp."""

from __future__ import annotations

from typing import Any

import torch

from ember.frontend.torch.context import Context
from ember.frontend.torch.elementwise import binary
from ember.frontend.torch.registry import converter
from ember.ir import DType, Value
from ember.ir.ops import (
    UNARY_OPS,
    ArgMax,
    ArgMin,
    ReduceMax,
    ReduceMean,
    ReduceMin,
    ReduceProd,
    ReduceSum,
)
from ember.ir.ops._shapes import norm_axis
from ember.ir.ops.index import TopK

aten = torch.ops.aten


def _axes(x: Value, dim: Any) -> tuple[int, ...]:
    if dim is None:
        return tuple(range(x.type.rank))
    dims = [dim] if isinstance(dim, int) else list(dim)
    return tuple(norm_axis("reduce", d, x.type.rank) for d in dims) or tuple(range(x.type.rank))


def _reduce(op_cls: Any) -> Any:
    def convert(cx: Context, x: Value, dim: Any = None, keepdim: bool = False, **_: Any) -> Value:
        out = cx.cast(x, cx.out_dtype())
        if x.type.rank == 0:
            return out
        return cx.emit(op_cls(_axes(x, dim), keepdim), out)

    return convert


converter(aten.sum.dim_IntList, aten.sum.default)(_reduce(ReduceSum))
converter(aten.mean.dim, aten.mean.default)(_reduce(ReduceMean))
converter(aten.amax.default, aten.max.default)(_reduce(ReduceMax))
converter(aten.amin.default, aten.min.default)(_reduce(ReduceMin))
converter(aten.prod.dim_int, aten.prod.default)(_reduce(ReduceProd))


@converter(
    aten.any.dim, aten.any.dims, aten.any.default, aten.all.dim, aten.all.dims, aten.all.default
)
def _any_all(cx: Context, x: Value, dim: Any = None, keepdim: bool = False) -> Value:
    op_cls = ReduceMax if cx.node.target.overloadpacket is aten.any else ReduceMin
    as_int = cx.cast(cx.cast(x, DType.bool), DType.int32)
    return cx.cast(cx.emit(op_cls(_axes(x, dim), keepdim), as_int), DType.bool)


def _arg(op_cls: Any) -> Any:
    def convert(cx: Context, x: Value, dim: int | None = None, keepdim: bool = False) -> Value:
        if dim is None:
            x = cx.reshape(x, (x.type.numel,))
            dim = 0
        return cx.emit(op_cls(norm_axis("arg", dim, x.type.rank), keepdim), x)

    return convert


converter(aten.argmax.default)(_arg(ArgMax))
converter(aten.argmin.default)(_arg(ArgMin))


@converter(aten.max.dim, aten.min.dim)
def _max_min_dim(cx: Context, x: Value, dim: int, keepdim: bool = False) -> tuple[Value, Value]:
    is_max = cx.node.target is aten.max.dim
    axis = norm_axis("max", dim, x.type.rank)
    values = cx.emit((ReduceMax if is_max else ReduceMin)((axis,), keepdim), x)
    indices = cx.emit((ArgMax if is_max else ArgMin)(axis, keepdim), x)
    return values, indices


@converter(aten.var.correction, aten.std.correction, aten.var_mean.correction)
def _var(
    cx: Context, x: Value, dim: Any = None, *, correction: Any = 1, keepdim: bool = False
) -> Any:
    axes = _axes(x, dim)
    count: Any = 1
    for a in axes:
        count = count * x.type.shape[a]
    mean = cx.emit(ReduceMean(axes, True), x)
    centered = binary(cx, "sub", x, mean)
    total = cx.emit(ReduceSum(axes, keepdim), binary(cx, "mul", centered, centered))
    divisor = cx.const(count - (1 if correction is None else correction), x.type.dtype)
    var = binary(cx, "div", total, divisor)
    target = cx.node.target
    if target is aten.std.correction:
        return cx.emit(UNARY_OPS["sqrt"](), var)
    if target is aten.var_mean.correction:
        return var, mean if keepdim else cx.reshape(mean, var.type.shape)
    return var


@converter(aten.logsumexp.default)
def _logsumexp(cx: Context, x: Value, dim: Any, keepdim: bool = False) -> Value:
    axes = _axes(x, dim)
    peak = cx.emit(ReduceMax(axes, True), x)
    shifted = cx.emit(UNARY_OPS["exp"](), binary(cx, "sub", x, peak))
    total = cx.emit(UNARY_OPS["log"](), cx.emit(ReduceSum(axes, True), shifted))
    out = binary(cx, "add", total, peak)
    return out if keepdim else cx.reshape(out, cx.out_shape())


@converter(aten.topk.default)
def _topk(
    cx: Context, x: Value, k: Any, dim: int = -1, largest: bool = True, sorted: bool = True
) -> Any:
    axis = norm_axis("topk", dim, x.type.rank)
    return cx.emit_multi(TopK(cx.dim(k), axis, largest), x)


@converter(aten.sort.default, aten.sort.stable)
def _sort(cx: Context, x: Value, *args: Any, **kwargs: Any) -> Any:
    """sort as topk over the whole axis; ties keep index order (a stable sort)."""
    if cx.node.target is aten.sort.stable:
        dim, descending = kwargs.get("dim", -1), kwargs.get("descending", False)
    else:
        dim = args[0] if args else kwargs.get("dim", -1)
        descending = args[1] if len(args) > 1 else kwargs.get("descending", False)
    if x.type.rank == 0:
        return x, cx.const(0, DType.int64)
    axis = norm_axis("sort", dim, x.type.rank)
    return cx.emit_multi(TopK(x.type.shape[axis], axis, descending), x)
