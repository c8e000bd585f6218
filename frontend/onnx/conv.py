"""Converters for ONNX convolutions and pooling: Conv, ConvTranspose, MaxPool, AveragePool,
LpPool and the global pools."""

from __future__ import annotations

from ember.frontend.onnx.context import Context, Converter, OnnxNode
from ember.frontend.onnx.reduce import reduce
from ember.ir import Value, ops

__all__ = ["CONVERTERS"]


def _pads(node: OnnxNode, x: Value, kernel: tuple[int, ...], strides: tuple[int, ...],
          dilations: tuple[int, ...]) -> tuple[int, ...]:  # fmt: skip
    """Explicit pads, or the ones auto_pad implies (SAME_* keep ceil(size / stride) outputs)."""
    spatial = len(kernel)
    mode = node.attr("auto_pad", "NOTSET")
    if mode in ("NOTSET", ""):
        return tuple(node.attr("pads", (0,) * (2 * spatial)))
    if mode == "VALID":
        return (0,) * (2 * spatial)
    sizes = x.type.shape[2:]
    if not all(isinstance(s, int) for s in sizes):
        raise node.unsupported("auto_pad", f"{mode} with symbolic input {x.type}")
    before, after = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations, strict=True):
        assert isinstance(size, int)
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        before.append(small if mode == "SAME_UPPER" else big)
        after.append(big if mode == "SAME_UPPER" else small)
    return (*before, *after)


def _window(node: OnnxNode, x: Value, kernel: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    spatial = len(kernel)
    strides = tuple(node.attr("strides", (1,) * spatial))
    dilations = tuple(node.attr("dilations", (1,) * spatial))
    return strides, _pads(node, x, kernel, strides, dilations), dilations


def _bias(ctx: Context, out: Value, bias: Value | None) -> Value:
    if bias is None:
        return out
    shaped = ctx.emit(ops.Reshape((bias.type.shape[0], *([1] * (out.type.rank - 2)))), bias)
    return ctx.emit(ops.Add(), out, shaped)


def _conv(ctx: Context, node: OnnxNode) -> Value:
    x, w = node.required(0), node.required(1)
    kernel = tuple(int(k) for k in w.type.shape[2:])
    strides, pads, dilations = _window(node, x, kernel)
    out = ctx.emit(ops.Conv(strides, pads, dilations, node.attr("group", 1)), x, w)
    return _bias(ctx, out, node.input(2))


def _conv_transpose(ctx: Context, node: OnnxNode) -> Value:
    x, w = node.required(0), node.required(1)
    kernel = tuple(int(k) for k in w.type.shape[2:])
    spatial = len(kernel)
    strides = tuple(node.attr("strides", (1,) * spatial))
    dilations = tuple(node.attr("dilations", (1,) * spatial))
    extra = tuple(node.attr("output_padding", (0,) * spatial))
    mode = node.attr("auto_pad", "NOTSET")
    target = node.attr("output_shape")
    if target is None and mode in ("SAME_UPPER", "SAME_LOWER"):
        target = [int(d) * s for d, s in zip(x.type.shape[2:], strides, strict=True)]
    if target is None:
        pads = (
            tuple(node.attr("pads", (0,) * (2 * spatial)))
            if mode != "VALID"
            else (0,) * (2 * spatial)
        )
    else:
        target = list(target)[-spatial:]
        before, after = [], []
        for i in range(spatial):
            full = (
                strides[i] * (int(x.type.shape[2 + i]) - 1)
                + extra[i]
                + (kernel[i] - 1) * dilations[i]
                + 1
            )
            total = full - target[i]
            small, big = total // 2, total - total // 2
            before.append(small if mode == "SAME_UPPER" else big)
            after.append(big if mode == "SAME_UPPER" else small)
        pads = (*before, *after)
    op = ops.ConvTranspose(strides, pads, dilations, node.attr("group", 1), extra)
    return _bias(ctx, ctx.emit(op, x, w), node.input(2))


def _pool(kind: str) -> Converter:
    def convert(ctx: Context, node: OnnxNode) -> Value | list[Value]:
        x = node.required(0)
        kernel = tuple(node.attr("kernel_shape"))
        strides, pads, dilations = _window(node, x, kernel)
        ceil = bool(node.attr("ceil_mode", 0))
        if kind == "max":
            out = ctx.emit(ops.MaxPool(kernel, strides, pads, dilations, ceil), x)
            if node.num_outputs == 1:
                return out
            column_major = bool(node.attr("storage_order", 0))
            op = ops.MaxPoolIndices(kernel, strides, pads, dilations, ceil, column_major)
            return [out, ctx.emit(op, x)]
        if kind == "lp":
            return ctx.emit(
                ops.LpPool(kernel, strides, pads, dilations, ceil, node.attr("p", 2)), x
            )
        include = bool(node.attr("count_include_pad", 0))
        return ctx.emit(ops.AvgPool(kernel, strides, pads, dilations, ceil, include), x)

    return convert


def _global(op: type[ops.ReduceOp]) -> Converter:
    def convert(ctx: Context, node: OnnxNode) -> Value:
        x = node.required(0)
        return reduce(ctx, op, x, tuple(range(2, x.type.rank)), True)

    return convert


def _global_lp(ctx: Context, node: OnnxNode) -> Value:
    x = node.required(0)
    p = node.attr("p", 2)
    powered = ctx.emit(ops.Pow(), ctx.emit(ops.Abs(), x), ctx.scalar(p, x.type.dtype))
    total = reduce(ctx, ops.ReduceSum, powered, tuple(range(2, x.type.rank)), True)
    return ctx.emit(ops.Pow(), total, ctx.scalar(1.0 / p, x.type.dtype))


CONVERTERS: dict[str, Converter] = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "LpPool": _pool("lp"),
    "GlobalMaxPool": _global(ops.ReduceMax),
    "GlobalAveragePool": _global(ops.ReduceMean),
    "GlobalLpPool": _global_lp,
}
