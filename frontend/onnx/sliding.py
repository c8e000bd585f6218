"""ONNX ops over sliding windows built from existing ops: LRN (an average pool over channels)
and Col2Im (a constant scatter matrix from block columns to image pixels)."""

from __future__ import annotations

import itertools

import numpy as np

from ember.frontend.onnx.context import Context, Converter, OnnxNode
from ember.frontend.onnx.shape import reshape
from ember.ir import DType, Value, ops

__all__ = ["CONVERTERS"]


def _in(node: OnnxNode, i: int) -> Value:
    v = node.input(i)
    if v is None or not v.type.is_static:
        raise node.unsupported(f"input {i}", None if v is None else str(v.type))
    return v


def _lrn(ctx: Context, node: OnnxNode) -> Value:
    """y = x / (bias + alpha / size * sum of x^2 over `size` neighbouring channels)^beta."""
    x = _in(node, 0)
    size = int(node.attr("size"))
    alpha, beta = float(node.attr("alpha", 1e-4)), float(node.attr("beta", 0.75))
    n, c = int(x.type.shape[0]), int(x.type.shape[1])
    pixels = int(np.prod([int(d) for d in x.type.shape[2:]]))
    squares = reshape(ctx, ctx.emit(ops.Mul(), x, x), (n, 1, c, pixels))
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    pool = ops.AvgPool((size, 1), (1, 1), (before, 0, after, 0), (1, 1), False, True)
    window_sum = ctx.emit(ops.Mul(), ctx.emit(pool, squares), ctx.scalar(size, x.type.dtype))
    scale = ctx.emit(ops.Mul(), window_sum, ctx.scalar(alpha / size, x.type.dtype))
    base = ctx.emit(ops.Add(), scale, ctx.scalar(float(node.attr("bias", 1.0)), x.type.dtype))
    denominator = ctx.emit(ops.Pow(), base, ctx.scalar(beta, x.type.dtype))
    return ctx.emit(ops.Div(), x, reshape(ctx, denominator, x.type.shape))


def _col2im_matrix(image: list[int], block: list[int], node: OnnxNode) -> tuple[np.ndarray, int]:
    """M with image = columns @ M: rows (block offset, window position), columns pixels."""
    spatial = len(image)
    dilations = list(node.attr("dilations", [1] * spatial))
    strides = list(node.attr("strides", [1] * spatial))
    pads = list(node.attr("pads", [0] * 2 * spatial))
    windows = [
        (image[i] + pads[i] + pads[i + spatial] - dilations[i] * (block[i] - 1) - 1) // strides[i]
        + 1
        for i in range(spatial)
    ]
    positions = int(np.prod(windows))
    matrix = np.zeros((int(np.prod(block)) * positions, int(np.prod(image))))
    for k, offset in enumerate(itertools.product(*(range(b) for b in block))):
        for w, window in enumerate(itertools.product(*(range(n) for n in windows))):
            pixel = [window[i] * strides[i] - pads[i] + offset[i] * dilations[i]
                     for i in range(spatial)]  # fmt: skip
            if all(0 <= p < s for p, s in zip(pixel, image, strict=True)):
                matrix[k * positions + w, np.ravel_multi_index(pixel, image)] += 1
    return matrix, positions


def _col2im(ctx: Context, node: OnnxNode) -> Value:
    x = _in(node, 0)
    image = [int(d) for d in ctx.static(node.input(1), node, "image_shape").reshape(-1)]
    block = [int(d) for d in ctx.static(node.input(2), node, "block_shape").reshape(-1)]
    matrix, positions = _col2im_matrix(image, block, node)
    n, rows = int(x.type.shape[0]), int(x.type.shape[1])
    channels = rows // int(np.prod(block))
    if int(x.type.shape[2]) != positions:
        raise node.unsupported("input", f"{x.type} has {x.type.shape[2]} windows, not {positions}")
    wide = DType.float64 if x.type.dtype is DType.float64 else DType.float32
    columns = reshape(ctx, ctx.cast(x, wide), (n, channels, matrix.shape[0]))
    out = ctx.emit(ops.MatMul(), columns, ctx.const(matrix.astype(wide.numpy)))
    return ctx.cast(reshape(ctx, out, (n, channels, *image)), x.type.dtype)


CONVERTERS: dict[str, Converter] = {"LRN": _lrn, "Col2Im": _col2im}
