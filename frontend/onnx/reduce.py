"""Converters for ONNX reductions: ReduceSum/Mean/Max/Min/Prod, the composite L1/L2/LogSum/
LogSumExp/SumSquare, and ArgMax/ArgMin."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ember.frontend.onnx.context import Context, Converter, OnnxNode
from ember.ir import DType, Value, ops

__all__ = ["CONVERTERS", "reduce"]

_PRIMITIVE = {
    "ReduceSum": ops.ReduceSum, "ReduceMean": ops.ReduceMean, "ReduceMax": ops.ReduceMax,
    "ReduceMin": ops.ReduceMin, "ReduceProd": ops.ReduceProd,
}  # fmt: skip


def reduce(
    ctx: Context, op: type[ops.ReduceOp], x: Value, axes: tuple[int, ...], keepdims: bool
) -> Value:
    """op over `axes` (all when empty); an empty reduction gives the op's identity."""
    rank = x.type.rank
    axes_all = tuple(sorted({a % rank for a in axes})) if axes else tuple(range(rank))
    if any(x.type.shape[a] == 0 for a in axes_all):
        shape = [
            1 if i in axes_all else d
            for i, d in enumerate(x.type.shape)
            if keepdims or i not in axes_all
        ]
        identity = {
            ops.ReduceSum: 0,
            ops.ReduceProd: 1,
            ops.ReduceMax: -np.inf,
            ops.ReduceMin: np.inf,
        }
        value = identity.get(op, np.nan)
        if x.type.dtype.is_int and not np.isfinite(value):
            info = np.iinfo(x.type.dtype.numpy)
            value = info.min if value < 0 else info.max
        return ctx.emit(ops.Full(tuple(shape), value, x.type.dtype))
    return ctx.emit(op(axes_all, keepdims), x)


def _axes(ctx: Context, node: OnnxNode) -> tuple[int, ...] | None:
    """The reduced axes; None means the node is a no-op (noop_with_empty_axes)."""
    v = node.input(1)
    axes = tuple(int(a) for a in ctx.static(v, node, "axes").reshape(-1)) if v is not None else None
    if axes is None and node.attr("axes") is not None:
        axes = tuple(node.attr("axes"))
    if not axes and node.attr("noop_with_empty_axes", 0):
        return None
    return axes or ()


def _reducer(op: type[ops.ReduceOp], pre: Callable[[Context, Value], Value] | None = None,
             post: Callable[[Context, Value], Value] | None = None) -> Converter:  # fmt: skip
    def convert(ctx: Context, node: OnnxNode) -> Value:
        x = node.inputs[0]
        assert x is not None
        axes = _axes(ctx, node)
        if axes is None:
            return x
        out = reduce(ctx, op, pre(ctx, x) if pre else x, axes, bool(node.attr("keepdims", 1)))
        return post(ctx, out) if post else out

    return convert


def _log_sum_exp(ctx: Context, node: OnnxNode) -> Value:
    x = node.inputs[0]
    assert x is not None
    axes = _axes(ctx, node)
    if axes is None:
        return x
    keep = bool(node.attr("keepdims", 1))
    if x.type.numel == 0:
        return ctx.emit(ops.Log(), reduce(ctx, ops.ReduceSum, x, axes, keep))
    peak = reduce(ctx, ops.ReduceMax, x, axes, True)
    total = reduce(
        ctx, ops.ReduceSum, ctx.emit(ops.Exp(), ctx.emit(ops.Sub(), x, peak)), axes, keep
    )
    shift = peak if keep else reduce(ctx, ops.ReduceMax, x, axes, False)
    return ctx.emit(ops.Add(), ctx.emit(ops.Log(), total), shift)


def _arg(op: type[ops.ArgMax] | type[ops.ArgMin]) -> Converter:
    def convert(ctx: Context, node: OnnxNode) -> Value:
        x = node.inputs[0]
        assert x is not None
        return ctx.emit(op(node.attr("axis", 0), bool(node.attr("keepdims", 1)),
                           bool(node.attr("select_last_index", 0))), x)  # fmt: skip

    return convert


def _square(ctx: Context, x: Value) -> Value:
    return ctx.emit(ops.Mul(), x, x)


def _sqrt(ctx: Context, x: Value) -> Value:
    if x.type.dtype.is_float:
        return ctx.emit(ops.Sqrt(), x)
    root = ctx.emit(ops.Sqrt(), ctx.cast(x, DType.float32))
    return ctx.cast(root, x.type.dtype)


CONVERTERS: dict[str, Converter] = {
    **{name: _reducer(op) for name, op in _PRIMITIVE.items()},
    "ReduceL1": _reducer(ops.ReduceSum, pre=lambda ctx, x: ctx.emit(ops.Abs(), x)),
    "ReduceL2": _reducer(ops.ReduceSum, pre=_square, post=lambda ctx, x: _sqrt(ctx, x)),
    "ReduceSumSquare": _reducer(ops.ReduceSum, pre=_square),
    "ReduceLogSum": _reducer(ops.ReduceSum, post=lambda ctx, x: ctx.emit(ops.Log(), x)),
    "ReduceLogSumExp": _log_sum_exp,
    "ArgMax": _arg(ops.ArgMax),
    "ArgMin": _arg(ops.ArgMin),
}
