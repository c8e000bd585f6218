"""Sampling images at data-dependent positions: grid_sample (ONNX GridSample, torch's
F.grid_sample) over any number of spatial axes."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ember.ir.op import Op, register_op
from ember.ir.types import TensorType

__all__ = ["GridSample"]

_MODES = ("linear", "nearest", "cubic")
_PADDINGS = ("zeros", "border", "reflection")
_CUBIC_A = -0.75


def _cubic_coeffs(t: Any) -> list[Any]:
    """Keys' cubic weights of the taps at offsets -1, 0, 1, 2 for a fraction t in [0, 1)."""
    a = _CUBIC_A

    def near(x: Any) -> Any:
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: Any) -> Any:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


@register_op
@dataclass(frozen=True)
class GridSample(Op):
    """out[n, c, *o] = x[n, c] sampled at grid[n, *o, :], coordinates in [-1, 1] ordered
    innermost spatial axis first (x, y, z); `mode` interpolates, `padding_mode` decides what lies
    outside the image."""

    name: ClassVar[str] = "grid_sample"
    mode: str = "linear"
    padding_mode: str = "zeros"
    align_corners: bool = False

    def infer(self, x: TensorType, grid: TensorType) -> TensorType:
        if self.mode not in _MODES or self.padding_mode not in _PADDINGS:
            raise self.error(f"mode={self.mode!r} padding_mode={self.padding_mode!r} unsupported")
        spatial = x.rank - 2
        if spatial < 1 or grid.rank != x.rank or grid.shape[-1] != spatial:
            raise self.error(f"grid must be [N, *out, {spatial}] for input {x}, got {grid}")
        if not x.dtype.is_float or grid.dtype != x.dtype:
            raise self.error(f"input and grid must share a float dtype, got {x} and {grid}")
        return x.with_shape((x.shape[0], x.shape[1], *grid.shape[1:-1]))

    def _bounds(self, size: Any) -> tuple[Any, Any]:
        return (0.0, size - 1.0) if self.align_corners else (-0.5, size - 0.5)

    def _coordinate(self, g: Any, size: Any, ops: _Math) -> Any:
        """Grid value -> input coordinate, rounded (nearest) and folded into the image."""
        v = (g + 1) / 2 * (size - 1) if self.align_corners else ((g + 1) * size - 1) / 2
        if self.mode == "nearest":
            v = ops.rint(v)
        low, high = self._bounds(size)
        if self.padding_mode == "border":
            v = ops.where(ops.either(v < low, v > high), ops.clip(v, 0.0, size - 1.0), v)
        elif self.padding_mode == "reflection":
            v = _reflect(v, low, high, ops)
        return v

    def _taps(self, v: Any, ops: _Math) -> list[tuple[Any, Any]]:
        """(index, weight) pairs of the interpolation taps around coordinate v."""
        if self.mode == "nearest":
            return [(ops.trunc(v), 1.0)]
        base = ops.floor(v)
        t = v - base
        if self.mode == "linear":
            return [(base, 1 - t), (base + 1, t)]
        return [(base + k - 1, w) for k, w in enumerate(_cubic_coeffs(t))]

    def _fetch_index(self, i: Any, size: Any, ops: _Math) -> tuple[Any, Any]:
        """The in-image index for tap index i, and whether the tap reads the image at all."""
        if self.padding_mode == "border":
            return ops.clip(i, 0.0, size - 1.0), True
        if self.padding_mode == "reflection":
            low, high = self._bounds(size)
            return ops.trunc(_reflect(i, low, high, ops)), True
        return ops.clip(i, 0.0, size - 1.0), ops.both(i >= 0, i <= size - 1)

    def reference(self, x: np.ndarray, grid: np.ndarray) -> np.ndarray:
        spatial = x.ndim - 2
        work = np.float64 if x.dtype == np.float64 else np.float32
        ops = _NUMPY
        n_index = np.arange(x.shape[0]).reshape((-1,) + (1,) * spatial)
        taps_per_axis = []
        for axis in range(spatial):
            size = float(x.shape[2 + axis])
            g = grid[..., spatial - 1 - axis].astype(work)
            taps_per_axis.append(self._taps(self._coordinate(g, size, ops), ops))
        out = np.zeros((x.shape[0], *grid.shape[1:-1], x.shape[1]), dtype=np.float64)
        for taps in itertools.product(*taps_per_axis):
            weight = np.ones(grid.shape[:-1], dtype=np.float64)
            index, inside = [], np.ones(grid.shape[:-1], dtype=bool)
            for axis, (i, w) in enumerate(taps):
                fetched, ok = self._fetch_index(i, float(x.shape[2 + axis]), ops)
                index.append(fetched.astype(np.int64))
                inside &= ok
                weight = weight * w
            values = np.moveaxis(x, 1, -1)[(n_index, *index)]  # [N, *out, C]
            out += np.where(inside, weight, 0.0)[..., None] * values
        return np.moveaxis(out, -1, 1).astype(x.dtype)

    def compute(self, x: Any, grid: Any) -> Any:
        from tvm import te, tirx

        spatial = len(x.shape) - 2
        work = "float64" if x.dtype == "float64" else "float32"
        ops = _tir_math(tirx, work)
        out_shape = [x.shape[0], x.shape[1], *grid.shape[1:-1]]

        def coordinates(axis: int) -> Any:  # a stage of its own: keeps each tap's TIR small
            size = x.shape[2 + axis].astype(work)
            return te.compute(
                grid.shape[:-1],
                lambda *i: self._coordinate(grid(*i, spatial - 1 - axis).astype(work), size, ops),
                name=f"coordinate{axis}",
            )

        def taps(axis: int) -> list[tuple[Any, Any, Any]]:
            """Per tap: stages holding its image index, weight and whether it reads the image."""
            coord, size = coordinates(axis), x.shape[2 + axis].astype(work)
            count = {"nearest": 1, "linear": 2, "cubic": 4}[self.mode]

            def part(k: int, what: int) -> Any:
                def at(*i: Any) -> Any:
                    index, weight = self._taps(coord(*i), ops)[k]
                    fetched, ok = self._fetch_index(index, size, ops)
                    ok = tirx.const(True, "bool") if ok is True else ok
                    weight = tirx.const(weight, work) if isinstance(weight, float) else weight
                    return (fetched.astype("int64"), weight, ok)[what]

                return te.compute(grid.shape[:-1], at, name=f"tap{axis}_{k}_{what}")

            return [(part(k, 0), part(k, 1), part(k, 2)) for k in range(count)]

        taps_per_axis = [taps(axis) for axis in range(spatial)]

        def body(n: Any, c: Any, *o: Any) -> Any:
            total = tirx.const(0.0, work)
            for combo in itertools.product(*taps_per_axis):
                weight, inside = tirx.const(1.0, work), tirx.const(True, "bool")
                for _, w, ok in combo:
                    weight, inside = weight * w(n, *o), tirx.And(inside, ok(n, *o))
                value = x(n, c, *(index(n, *o) for index, _, _ in combo)).astype(work)
                total = total + tirx.if_then_else(inside, weight * value, tirx.const(0.0, work))
            return total.astype(x.dtype)

        return te.compute(out_shape, body, name="grid_sample")


@dataclass(frozen=True)
class _Math:
    """The few elementwise functions the sampling math needs, for numpy or for TIR."""

    rint: Callable[[Any], Any]
    floor: Callable[[Any], Any]
    trunc: Callable[[Any], Any]
    where: Callable[[Any, Any, Any], Any]
    clip: Callable[[Any, Any, Any], Any]
    either: Callable[[Any, Any], Any]
    both: Callable[[Any, Any], Any]


_NUMPY = _Math(np.rint, np.floor, np.trunc, np.where, np.clip, np.logical_or, np.logical_and)


def _tir_math(tirx: Any, work: str) -> _Math:
    def clip(v: Any, low: Any, high: Any) -> Any:
        return tirx.max(tirx.min(v, tirx.const(high, work) if isinstance(high, float) else high),
                        tirx.const(low, work))  # fmt: skip

    return _Math(
        rint=tirx.nearbyint,
        floor=tirx.floor,
        trunc=tirx.trunc,
        where=tirx.if_then_else,
        clip=clip,
        either=tirx.Or,
        both=tirx.And,
    )


def _reflect(v: Any, low: Any, high: Any, ops: _Math) -> Any:
    """Fold v into [low, high] by mirroring at the borders, as often as needed."""
    span = high - low
    below, above = low - v, v - high
    dist = ops.where(below > 0, below, above)
    turns = ops.floor(dist / span)
    rest = dist - turns * span
    even = (turns - 2 * ops.floor(turns / 2)) == 0
    from_low, from_high = low + rest, high - rest
    folded_below = ops.where(even, from_low, from_high)
    folded_above = ops.where(even, from_high, from_low)
    return ops.where(below > 0, folded_below, ops.where(above > 0, folded_above, v))
