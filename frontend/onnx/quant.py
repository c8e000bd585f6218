"""Converters for ONNX linear quantization: QuantizeLinear and DequantizeLinear (per-tensor and
per-axis), composed from elementwise ops in float32."""

from __future__ import annotations

import numpy as np

from ember.frontend.onnx.context import Context, Converter, OnnxNode, onnx_dtype
from ember.frontend.onnx.shape import reshape
from ember.ir import DType, Value, ops
from ember.ir.ops._shapes import norm_axis

__all__ = ["CONVERTERS"]


def _per_axis(ctx: Context, node: OnnxNode, v: Value, rank: int) -> Value:
    """A scale or zero point broadcast against the data: a scalar, or a vector along `axis`."""
    if node.attr("block_size", 0):
        raise node.unsupported("block_size", node.attr("block_size"))
    if v.type.rank == 0 or v.type.numel == 1:
        return reshape(ctx, v, ())
    axis = norm_axis(node.op_type, node.attr("axis", 1), rank)
    return reshape(ctx, v, [v.type.shape[0] if i == axis else 1 for i in range(rank)])


def _dequantize(ctx: Context, node: OnnxNode) -> Value:
    x, scale, zero = node.required(0), node.required(1), node.input(2)
    wide = ctx.cast(x, DType.float32)
    if zero is not None:
        wide = ctx.emit(
            ops.Sub(), wide, ctx.cast(_per_axis(ctx, node, zero, x.type.rank), DType.float32)
        )
    out = ctx.emit(
        ops.Mul(), wide, ctx.cast(_per_axis(ctx, node, scale, x.type.rank), DType.float32)
    )
    target = node.attr("output_dtype", 0)
    return ctx.cast(out, onnx_dtype(target, node.op_type) if target else scale.type.dtype)


def _quantize(ctx: Context, node: OnnxNode) -> Value:
    x, scale, zero = node.required(0), node.required(1), node.input(2)
    target = node.attr("output_dtype", 0)
    dtype = (
        onnx_dtype(target, node.op_type)
        if target
        else (zero.type.dtype if zero is not None else DType.uint8)
    )
    if not dtype.is_int:
        raise node.unsupported("output type", dtype.value)
    wide = ctx.cast(x, DType.float32)
    scaled = ctx.emit(
        ops.Div(), wide, ctx.cast(_per_axis(ctx, node, scale, x.type.rank), DType.float32)
    )
    q = ctx.emit(ops.Round(), scaled)
    if zero is not None:
        q = ctx.emit(ops.Add(), q, ctx.cast(_per_axis(ctx, node, zero, x.type.rank), DType.float32))
    info = np.iinfo(dtype.numpy)
    return ctx.cast(ctx.emit(ops.Clip(float(info.min), float(info.max)), q), dtype)


CONVERTERS: dict[str, Converter] = {
    "QuantizeLinear": _quantize,
    "DequantizeLinear": _dequantize,
}
