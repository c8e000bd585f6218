"""Converters for matrix products: mm, bmm, matmul (1-D operands lifted), addmm, baddbmm,
linear."""

from __future__ import annotations

from typing import Any

import torch

from ember.frontend.torch.context import Context
from ember.frontend.torch.elementwise import binary
from ember.frontend.torch.registry import converter
from ember.ir import Value
from ember.ir.ops import MatMul, Transpose

aten = torch.ops.aten


def matmul(cx: Context, x: Value, y: Value) -> Value:
    """torch.matmul: 1-D operands are lifted to matrices and the added axis dropped again."""
    dtype = cx.promote(x, y)
    x, y = cx.cast(x, dtype), cx.cast(y, dtype)
    lift_x, lift_y = x.type.rank == 1, y.type.rank == 1
    if lift_x:
        x = cx.reshape(x, (1, x.type.shape[0]))
    if lift_y:
        y = cx.reshape(y, (y.type.shape[0], 1))
    out = cx.emit(MatMul(), x, y)
    if lift_x or lift_y:
        shape = out.type.shape
        keep = shape[:-2] + (() if lift_x else (shape[-2],)) + (() if lift_y else (shape[-1],))
        out = cx.reshape(out, keep)
    return out


def transposed(cx: Context, w: Value) -> Value:
    perm = (*range(w.type.rank - 2), w.type.rank - 1, w.type.rank - 2)
    return cx.emit(Transpose(perm), w)


@converter(aten.mm.default, aten.bmm.default, aten.matmul.default)
def _mm(cx: Context, x: Value, y: Value) -> Value:
    return matmul(cx, x, y)


@converter(aten.linear.default)
def _linear(cx: Context, x: Value, weight: Value, bias: Value | None = None) -> Value:
    out = matmul(cx, x, transposed(cx, weight) if weight.type.rank == 2 else weight)
    return out if bias is None else binary(cx, "add", out, bias)


@converter(aten.addmm.default, aten.baddbmm.default, aten.addmv.default)
def _addmm(cx: Context, bias: Value, x: Value, y: Value, *, beta: Any = 1, alpha: Any = 1) -> Value:
    out = matmul(cx, x, y)
    if alpha != 1:
        out = binary(cx, "mul", out, alpha)
    if beta == 0:
        return out
    return binary(cx, "add", out, bias if beta == 1 else binary(cx, "mul", bias, beta))
