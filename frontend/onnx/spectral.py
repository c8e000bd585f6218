"""ONNX DFT as constant cosine/sine matrices applied along the signal axis (real or complex
input, zero-padded or truncated to dft_length, onesided, inverse)."""

from __future__ import annotations

import numpy as np

from ember.frontend.onnx.context import Context, Converter, OnnxNode
from ember.frontend.onnx.resize import along_axis
from ember.frontend.onnx.shape import reshape
from ember.ir import DType, Value, ops

__all__ = ["CONVERTERS"]


def _scalar(ctx: Context, node: OnnxNode, i: int, what: str) -> int | None:
    v = node.input(i)
    return None if v is None else int(ctx.static(v, node, what).reshape(-1)[0])


def _part(ctx: Context, x: Value, k: int) -> Value:
    rank = x.type.rank
    part = ctx.emit(ops.Slice((rank - 1,), (k,), (k + 1,), (1,)), x)
    return reshape(ctx, part, x.type.shape[:-1])


def _dft(ctx: Context, node: OnnxNode) -> Value:
    x = node.input(0)
    if x is None or not x.type.is_static:
        raise node.unsupported("input", None if x is None else str(x.type))
    rank = x.type.rank
    axis = node.attr("axis", 1) if ctx.opset < 20 else (_scalar(ctx, node, 2, "axis") or -2)
    axis = axis % rank
    if axis == rank - 1:
        raise node.unsupported("axis", axis)
    size = int(x.type.shape[axis])
    n = _scalar(ctx, node, 1, "dft_length") or size
    inverse, onesided = bool(node.attr("inverse", 0)), bool(node.attr("onesided", 0))
    if inverse and onesided:
        return _irfft(ctx, x, axis, _scalar(ctx, node, 1, "dft_length") or 2 * (size - 1))
    freqs = n // 2 + 1 if onesided else n
    angle = 2 * np.pi * np.outer(np.arange(freqs), np.arange(size)) / n
    angle[:, min(size, n) :] = np.nan  # samples past dft_length are dropped
    cos, sin = np.nan_to_num(np.cos(angle)), np.nan_to_num(np.sin(angle))
    sign = 1.0 if inverse else -1.0
    wide = ctx.cast(x, DType.float64)
    real = _part(ctx, wide, 0)
    imag = _part(ctx, wide, 1) if int(x.type.shape[-1]) == 2 else None
    out_real = along_axis(ctx, real, cos, axis)
    out_imag = along_axis(ctx, real, sign * sin, axis)
    if imag is not None:
        out_real = ctx.emit(ops.Sub(), out_real, along_axis(ctx, imag, sign * sin, axis))
        out_imag = ctx.emit(ops.Add(), out_imag, along_axis(ctx, imag, cos, axis))
    parts = [reshape(ctx, p, (*p.type.shape, 1)) for p in (out_real, out_imag)]
    out = ctx.emit(ops.Concat(rank - 1), *parts)
    if inverse:
        out = ctx.emit(ops.Div(), out, ctx.scalar(float(n), DType.float64))
    return ctx.cast(out, x.type.dtype)


def _irfft(ctx: Context, x: Value, axis: int, n: int) -> Value:
    """The real inverse of a onesided spectrum: the missing half is its conjugate mirror."""
    freqs = int(x.type.shape[axis])
    k = np.arange(freqs)
    mirrored = np.where((k == 0) | ((n % 2 == 0) & (k == n // 2)) | (k >= (n + 1) // 2 + 1), 1, 2)
    angle = 2 * np.pi * np.outer(np.arange(n), k) / n
    wide = ctx.cast(x, DType.float64)
    out = along_axis(ctx, _part(ctx, wide, 0), mirrored * np.cos(angle) / n, axis)
    if int(x.type.shape[-1]) == 2:
        sin = along_axis(ctx, _part(ctx, wide, 1), mirrored * np.sin(angle) / n, axis)
        out = ctx.emit(ops.Sub(), out, sin)
    return ctx.cast(reshape(ctx, out, (*out.type.shape, 1)), x.type.dtype)


CONVERTERS: dict[str, Converter] = {"DFT": _dft}
