"""ONNX Resize (and Upsample, which the version converter turns into Resize), and GridSample.

Resize is separable and linear in its input, so each resized axis becomes one constant
interpolation matrix W (out x in), built here at import time with the spec's coordinate
transforms and kernels (nearest, linear, cubic, antialiased); the graph multiplies by W along
that axis. tf_crop_and_resize's extrapolated positions become one `where` over a constant mask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ember.frontend.onnx.context import Context, Converter, OnnxNode
from ember.ir import DType, Value, ops
from ember.ir.ops._shapes import norm_axis

__all__ = ["CONVERTERS", "along_axis", "axis_weights"]

_Kernel = Callable[[float, float], np.ndarray]  # (ratio, scale) -> coefficients


@dataclass(frozen=True)
class ResizeSpec:
    """The per-axis settings of one Resize node, as the ONNX attributes name them."""

    mode: str = "nearest"
    coordinate_transformation_mode: str = "half_pixel"
    nearest_mode: str = "round_prefer_floor"
    cubic_coeff_a: float = -0.75
    exclude_outside: bool = False
    antialias: bool = False

    def kernel(self) -> _Kernel:
        if self.mode == "nearest":
            return lambda ratio, scale: _nearest(ratio, self.nearest_mode)
        if self.mode == "linear":
            return _linear_antialias if self.antialias else lambda r, s: np.array([1 - r, r])
        if self.mode == "cubic":
            a = self.cubic_coeff_a
            if self.antialias:
                return lambda r, s: _cubic_antialias(r, s, a)
            return lambda r, s: np.array([_cubic(1 + r, a), _cubic(r, a),
                                          _cubic(1 - r, a), _cubic(2 - r, a)])  # fmt: skip
        raise ValueError(f"mode={self.mode!r}")


def _nearest(ratio: float, mode: str) -> np.ndarray:
    if float(ratio).is_integer():
        return np.array([0.0, 1.0])
    up = {"round_prefer_floor": ratio > 0.5, "round_prefer_ceil": ratio >= 0.5,
          "floor": False, "ceil": True}[mode]  # fmt: skip
    return np.array([0.0, 1.0]) if up else np.array([1.0, 0.0])


def _cubic(x: float, a: float) -> float:
    x = abs(x)
    if x <= 1:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return 0.0


def _linear_antialias(ratio: float, scale: float) -> np.ndarray:
    scale = min(scale, 1.0)
    start = int(np.floor(-1 / scale) + 1)
    args = (np.arange(start, 2 - start) - ratio) * scale
    coeffs = np.clip(1 - np.abs(args), 0, 1)
    return coeffs / coeffs.sum()


def _cubic_antialias(ratio: float, scale: float, a: float) -> np.ndarray:
    scale = min(scale, 1.0)
    start = int(np.floor(-2 / scale) + 1)
    coeffs = np.array([_cubic(scale * (i - ratio), a) for i in range(start, 2 - start)])
    return coeffs / coeffs.sum()


def _source_coords(
    mode: str, size: int, out: int, scale: float, roi: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Each output index's coordinate in the input, and whether it is extrapolated."""
    y = np.arange(out, dtype=np.float64)
    width = scale * size
    outside = np.zeros(out, dtype=bool)
    if mode == "align_corners":
        x = np.zeros(out) if width == 1 else y * (size - 1) / (width - 1)
    elif mode == "asymmetric":
        x = y / scale
    elif mode == "tf_crop_and_resize":
        lo, hi = roi
        x = np.full(out, (hi - lo) * (size - 1) / 2) if width == 1 else (
            y * (hi - lo) * (size - 1) / (width - 1)
        )  # fmt: skip
        x = x + lo * (size - 1)
        outside = (x < 0) | (x > size - 1)
    elif mode == "pytorch_half_pixel":
        x = np.full(out, -0.5) if width == 1 else (y + 0.5) / scale - 0.5
    elif mode == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    elif mode == "half_pixel_symmetric":
        offset = size / 2 * (1 - out / width)
        x = offset + (y + 0.5) / scale - 0.5
    else:
        raise ValueError(f"coordinate_transformation_mode={mode!r}")
    return x, outside


def axis_weights(
    spec: ResizeSpec, size: int, out: int, scale: float, roi: tuple[float, float] = (0.0, 1.0)
) -> tuple[np.ndarray, np.ndarray]:
    """W (out x size) with resized = W @ x along the axis, and the extrapolated output rows."""
    kernel = spec.kernel()
    coords, outside = _source_coords(spec.coordinate_transformation_mode, size, out, scale, roi)
    weights = np.zeros((out, size))
    for o, x in enumerate(coords):
        floor = np.floor(x)
        ratio = 1.0 if x == floor else x - floor
        coeffs = np.asarray(kernel(ratio, scale), dtype=np.float64)
        n = len(coeffs)
        frac = x + np.ceil(n / 2) - np.floor(x + np.ceil(n / 2))
        if n % 2 == 0:
            first = int(floor) - n // 2 + (0 if frac == 0 else 1)
        else:
            first = int(floor) - (n - 1) // 2 + (0 if frac <= 0.5 else 1)
        neighbors = np.arange(first, first + n)
        if spec.exclude_outside:
            coeffs = np.where((neighbors < 0) | (neighbors >= size), 0.0, coeffs)
            total = coeffs.sum()
            coeffs = coeffs / (total if total != 0 else 1.0)
        np.add.at(weights[o], np.clip(neighbors, 0, size - 1), coeffs)
    weights[outside] = 0.0
    return weights, outside


def _floats(ctx: Context, node: OnnxNode, i: int, what: str) -> np.ndarray | None:
    v = node.input(i)
    if v is None:
        return None
    found = ctx.static(v, node, what).astype(np.float64).reshape(-1)
    return found if found.size else None


def _plan(
    ctx: Context, node: OnnxNode, shape: tuple[int, ...]
) -> tuple[list[int], list[int], list[float], np.ndarray | None]:
    """The resized axes, their output sizes and scales, and the roi over all axes."""
    rank = len(shape)
    axes = [norm_axis("Resize", a, rank) for a in node.attr("axes", range(rank))]
    roi, scales = _floats(ctx, node, 1, "roi"), _floats(ctx, node, 2, "scales")
    sizes = _floats(ctx, node, 3, "sizes")
    if scales is not None:
        outs = [int(np.floor(s * shape[a])) for s, a in zip(scales, axes, strict=True)]
        return axes, outs, [float(s) for s in scales], roi
    if sizes is None:
        raise node.unsupported("inputs", "neither scales nor sizes")
    factors = [float(s / shape[a]) for s, a in zip(sizes, axes, strict=True)]
    policy = node.attr("keep_aspect_ratio_policy", "stretch")
    if policy != "stretch":
        scale = min(factors) if policy == "not_larger" else max(factors)
        factors = [scale] * len(axes)
        return axes, [int(scale * shape[a] + 0.5) for a in axes], factors, roi
    return axes, [int(s) for s in sizes], factors, roi


def along_axis(ctx: Context, x: Value, weights: np.ndarray, axis: int) -> Value:
    """x multiplied by `weights` (out x in) along `axis`."""
    w = ctx.const(weights.astype(x.type.dtype.numpy))
    rank = x.type.rank
    if axis == rank - 1:
        return ctx.emit(ops.MatMul(), x, ctx.emit(ops.Transpose((1, 0)), w))
    if axis == rank - 2:
        return ctx.emit(ops.MatMul(), w, x)
    perm = (*(a for a in range(rank) if a != axis), axis)
    moved = along_axis(ctx, ctx.emit(ops.Transpose(perm), x), weights, rank - 1)
    return ctx.emit(ops.Transpose(tuple(int(i) for i in np.argsort(perm))), moved)


def _resize(ctx: Context, node: OnnxNode) -> Value:
    x = node.input(0)
    if x is None or not x.type.is_static:
        raise node.unsupported("input", None if x is None else str(x.type))
    shape = tuple(int(d) for d in x.type.shape)
    spec = ResizeSpec(
        node.attr("mode", "nearest"), node.attr("coordinate_transformation_mode", "half_pixel"),
        node.attr("nearest_mode", "round_prefer_floor"), float(node.attr("cubic_coeff_a", -0.75)),
        bool(node.attr("exclude_outside", 0)), bool(node.attr("antialias", 0)),
    )  # fmt: skip
    axes, outs, scales, roi = _plan(ctx, node, shape)
    wide = DType.float64 if x.type.dtype is DType.float64 else DType.float32
    y = ctx.cast(x, wide)
    mask = np.zeros([1] * len(shape), dtype=bool)
    for i, (axis, out, scale) in enumerate(zip(axes, outs, scales, strict=True)):
        bounds = (0.0, 1.0) if roi is None else (roi[i], roi[i + len(axes)])
        if out == shape[axis] and np.isclose(scale, 1.0) and np.allclose(bounds, (0.0, 1.0)):
            continue
        weights, outside = axis_weights(spec, shape[axis], out, scale, bounds)
        y = along_axis(ctx, y, weights, axis)
        mask = mask | outside.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    if mask.any():
        fill = ctx.scalar(node.attr("extrapolation_value", 0.0), wide)
        y = ctx.emit(ops.Where(), ctx.const(mask), fill, y)
    if not x.type.dtype.is_float:
        y = ctx.emit(ops.Round(), y)
    return ctx.cast(y, x.type.dtype)


_GRID_MODES = {"bilinear": "linear", "bicubic": "cubic"}  # opset 16 names


def _grid_sample(ctx: Context, node: OnnxNode) -> Value:
    x, grid = node.input(0), node.input(1)
    if x is None or grid is None:
        raise node.unsupported("inputs", "X and grid are required")
    mode = node.attr("mode", "linear")
    op = ops.GridSample(
        _GRID_MODES.get(mode, mode), node.attr("padding_mode", "zeros"),
        bool(node.attr("align_corners", 0)),
    )  # fmt: skip
    return ctx.emit(op, x, ctx.cast(grid, x.type.dtype))


CONVERTERS: dict[str, Converter] = {"Resize": _resize, "GridSample": _grid_sample}
