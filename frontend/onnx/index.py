"""Converters for ONNX data-dependent indexing and layout ops: GatherElements, GatherND,
ScatterElements, ScatterND, OneHot, TopK, Trilu, CumSum, CumProd, Pad and ReverseSequence."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ember.frontend.onnx.context import Context, Converter, OnnxNode
from ember.ir import DType, Value, ops
from ember.ir.ops._shapes import norm_axis

__all__ = ["CONVERTERS"]


def _int(ctx: Context, node: OnnxNode, i: int, what: str) -> int:
    return int(ctx.static(node.required(i), node, what).reshape(-1)[0])


def _scatter_elements(ctx: Context, node: OnnxNode) -> Value:
    op = ops.ScatterElements(node.attr("axis", 0), node.attr("reduction", "none"))
    return ctx.emit(op, node.required(0), node.required(1), node.required(2))


def _one_hot(ctx: Context, node: OnnxNode) -> Value:
    indices = node.required(0)
    depth = int(ctx.static(node.required(1), node, "depth").reshape(-1)[0])
    values = ctx.static(node.required(2), node, "values")
    if not indices.type.dtype.is_int:
        indices = ctx.cast(indices, DType.int64)
    dtype = DType.of(values.dtype)
    return ctx.emit(
        ops.OneHot(depth, node.attr("axis", -1), values[1].item(), values[0].item(), dtype), indices
    )


def _topk(ctx: Context, node: OnnxNode) -> Sequence[Value]:
    x = node.required(0)
    k = _int(ctx, node, 1, "K")
    return ctx.emit_multi(ops.TopK(k, node.attr("axis", -1), bool(node.attr("largest", 1))), x)


def _trilu(ctx: Context, node: OnnxNode) -> Value:
    k = _int(ctx, node, 1, "k") if node.input(1) is not None else 0
    return ctx.emit(ops.Trilu(bool(node.attr("upper", 1)), k), node.required(0))


def _scan(op: type[ops.CumSum] | type[ops.CumProd]) -> Converter:
    def convert(ctx: Context, node: OnnxNode) -> Value:
        axis = _int(ctx, node, 1, "axis")
        flags = bool(node.attr("exclusive", 0)), bool(node.attr("reverse", 0))
        return ctx.emit(op(axis, *flags), node.required(0))

    return convert


def _pad(ctx: Context, node: OnnxNode) -> Value:
    x = node.required(0)
    rank = x.type.rank
    pads = [int(p) for p in ctx.static(node.required(1), node, "pads").reshape(-1)]
    value_in = node.input(2)
    value = (
        ctx.static(value_in, node, "constant_value").reshape(-1)[0].item()
        if value_in is not None
        else 0
    )
    axes_in = node.input(3)
    if axes_in is not None:
        axes = [
            norm_axis("Pad", int(a), rank) for a in ctx.static(axes_in, node, "axes").reshape(-1)
        ]
        full = [0] * (2 * rank)
        for i, a in enumerate(axes):
            full[a], full[a + rank] = pads[i], pads[i + len(axes)]
        pads = full
    if not any(pads):
        return x
    return ctx.emit(ops.Pad(tuple(pads), node.attr("mode", "constant"), value), x)


def _gather_nd(ctx: Context, node: OnnxNode) -> Value:
    return ctx.emit(ops.GatherNd(node.attr("batch_dims", 0)), node.required(0), node.required(1))


def _scatter_nd(ctx: Context, node: OnnxNode) -> Value:
    op = ops.ScatterNd(node.attr("reduction", "none"))
    return ctx.emit(op, node.required(0), node.required(1), node.required(2))


def _compress(ctx: Context, node: OnnxNode) -> Value:
    x, condition = node.required(0), ctx.static(node.required(1), node, "condition")
    axis = node.attr("axis")
    keep = np.nonzero(condition)[0].astype(np.int64)
    if axis is None:
        x = ctx.emit(ops.Reshape((x.type.numel,)), x)
        axis = 0
    return ctx.emit(ops.Gather(axis), x, ctx.const(keep))


def _reverse_sequence(ctx: Context, node: OnnxNode) -> Value:
    """Each batch entry's first sequence_lens[b] time steps reversed: a constant gather."""
    x = node.required(0)
    lengths = ctx.static(node.required(1), node, "sequence_lens").astype(np.int64)
    batch_axis, time_axis = node.attr("batch_axis", 1), node.attr("time_axis", 0)
    if not x.type.is_static:
        raise node.unsupported("input", str(x.type))
    shape = [int(d) for d in x.type.shape]
    steps = np.arange(shape[time_axis]).reshape(
        [-1 if a == time_axis else 1 for a in range(len(shape))]
    )
    lens = lengths.reshape([-1 if a == batch_axis else 1 for a in range(len(shape))])
    index = np.broadcast_to(np.where(steps < lens, lens - 1 - steps, steps), shape)
    return ctx.emit(ops.GatherElements(time_axis), x, ctx.const(np.ascontiguousarray(index)))


CONVERTERS: dict[str, Converter] = {
    "ReverseSequence": _reverse_sequence,
    "GatherElements": lambda ctx, node: ctx.emit(
        ops.GatherElements(node.attr("axis", 0)), node.required(0), node.required(1)
    ),
    "GatherND": _gather_nd,
    "ScatterElements": _scatter_elements,
    "Scatter": _scatter_elements,
    "ScatterND": _scatter_nd,
    "OneHot": _one_hot,
    "TopK": _topk,
    "Trilu": _trilu,
    "CumSum": _scan(ops.CumSum),
    "CumProd": _scan(ops.CumProd),
    "Pad": _pad,
    "Compress": _compress,
}
