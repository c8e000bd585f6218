"""Integer and quantized linear algebra: MatMulInteger, ConvInteger, QLinearMatMul and
QLinearConv, as float32 matmul/conv of zero-point-shifted integers (exact below 2**24) followed
by an int32 cast or a requantization."""

from __future__ import annotations

import numpy as np

from ember.frontend.onnx import conv
from ember.frontend.onnx.context import Context, Converter, OnnxNode
from ember.frontend.onnx.nn import matmul
from ember.frontend.onnx.shape import reshape
from ember.ir import DType, Value, ops

__all__ = ["CONVERTERS"]


def _shifted(ctx: Context, x: Value, zero: Value | None, shape: tuple[int, ...]) -> Value:
    """float32(x - zero); a vector zero point is reshaped to `shape` to broadcast."""
    wide = ctx.cast(x, DType.float32)
    if zero is None:
        return wide
    zero = ctx.cast(_broadcastable(ctx, zero, shape), DType.float32)
    return ctx.emit(ops.Sub(), wide, zero)


def _broadcastable(ctx: Context, v: Value, shape: tuple[int, ...]) -> Value:
    return reshape(ctx, v, ()) if v.type.numel == 1 else reshape(ctx, v, shape)


def _requantize(
    ctx: Context, acc: Value, scales: list[Value], shapes: list[tuple[int, ...]],
    y_scale: Value, y_zero: Value | None,
) -> Value:  # fmt: skip
    """round(acc * a_scale * b_scale / y_scale) + y_zero, saturated to y_zero's type."""
    multiplier = ctx.emit(
        ops.Mul(), *(_broadcastable(ctx, s, shape) for s, shape in zip(scales, shapes, strict=True))
    )
    multiplier = ctx.cast(ctx.emit(ops.Div(), multiplier, y_scale), DType.float32)
    q = ctx.emit(ops.Round(), ctx.emit(ops.Mul(), acc, multiplier))
    dtype = DType.uint8 if y_zero is None else y_zero.type.dtype
    if y_zero is not None:
        q = ctx.emit(ops.Add(), q, ctx.cast(reshape(ctx, y_zero, ()), DType.float32))
    info = np.iinfo(dtype.numpy)
    return ctx.cast(ctx.emit(ops.Clip(float(info.min), float(info.max)), q), dtype)


def _integer_result(ctx: Context, acc: Value) -> Value:
    return ctx.cast(ctx.emit(ops.Round(), acc), DType.int32)


def _matmul_integer(ctx: Context, node: OnnxNode) -> Value:
    a, b = node.required(0), node.required(1)
    acc = matmul(
        ctx, _shifted(ctx, a, node.input(2), (-1, 1)), _shifted(ctx, b, node.input(3), (-1,))
    )
    return _integer_result(ctx, acc)


def _qlinear_matmul(ctx: Context, node: OnnxNode) -> Value:
    a, b = node.required(0), node.required(3)
    acc = matmul(
        ctx, _shifted(ctx, a, node.input(2), (-1, 1)), _shifted(ctx, b, node.input(5), (-1,))
    )
    return _requantize(ctx, acc, [node.required(1), node.required(4)], [(-1, 1), (-1,)], node.required(6),
                       node.input(7))  # fmt: skip


def _conv_of(ctx: Context, node: OnnxNode, x: Value, w: Value, bias: Value | None) -> Value:
    inputs = (x, w) if bias is None else (x, w, ctx.cast(bias, DType.float32))
    float_node = OnnxNode("Conv", node.name, inputs, node.attrs, 1)
    out = conv.CONVERTERS["Conv"](ctx, float_node)
    assert isinstance(out, Value)
    return out


def _conv_integer(ctx: Context, node: OnnxNode) -> Value:
    x, w = node.required(0), node.required(1)
    per_channel = (-1,) + (1,) * (w.type.rank - 1)
    xs = _shifted(ctx, x, node.input(2), ())
    return _integer_result(
        ctx, _conv_of(ctx, node, xs, _shifted(ctx, w, node.input(3), per_channel), None)
    )


def _qlinear_conv(ctx: Context, node: OnnxNode) -> Value:
    x, w = node.required(0), node.required(3)
    per_channel = (-1,) + (1,) * (w.type.rank - 1)
    xs, ws = _shifted(ctx, x, node.input(2), ()), _shifted(ctx, w, node.input(5), per_channel)
    acc = _conv_of(ctx, node, xs, ws, node.input(8))
    out_channel = (-1,) + (1,) * (x.type.rank - 2)
    return _requantize(ctx, acc, [node.required(1), node.required(4)], [(), out_channel], node.required(6),
                       node.input(7))  # fmt: skip


CONVERTERS: dict[str, Converter] = {
    "MatMulInteger": _matmul_integer,
    "QLinearMatMul": _qlinear_matmul,
    "ConvInteger": _conv_integer,
    "QLinearConv": _qlinear_conv,
}
