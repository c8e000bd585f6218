"""Data movement: reshape, transpose, expand, concat, split, slice, gather; and the
zero-input generators arange and full."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import sympy

from ember.ir.op import Op, register_op
from ember.ir.ops._shapes import broadcast_shapes, dims_equal, norm_axis
from ember.ir.types import Dim, DType, TensorType

__all__ = [
    "Arange",
    "Concat",
    "Expand",
    "Full",
    "Gather",
    "Reshape",
    "Slice",
    "Split",
    "Transpose",
    "normalize_slice",
]


@register_op
@dataclass(frozen=True)
class Reshape(Op):
    """x viewed with `shape` (one entry may be -1, inferred from the element count)."""

    name: ClassVar[str] = "reshape"
    shape: tuple[Dim, ...] = ()

    def infer(self, x: TensorType) -> TensorType:
        holes = [i for i, d in enumerate(self.shape) if d == -1]
        if len(holes) > 1:
            raise self.error(f"at most one -1 in shape {list(self.shape)}")
        known = sympy.Mul(*(d for d in self.shape if d != -1))
        total = sympy.sympify(x.numel)
        shape = list(self.shape)
        if holes:
            rest = sympy.simplify(total / known) if known != 0 else 0
            if not (rest.is_Integer or rest.free_symbols) or (rest.is_Integer and int(rest) < 0):
                raise self.error(f"cannot reshape {x} into {list(map(str, self.shape))}")
            shape[holes[0]] = rest
        elif sympy.simplify(total - known) != 0:
            raise self.error(
                f"cannot reshape {x} ({total} elements) into {list(map(str, self.shape))}"
            )
        return x.with_shape(shape)

    def reference(self, x: np.ndarray) -> np.ndarray:
        return x.reshape([int(d) for d in self.shape])

    def lower(self, ctx: Any, args: Any) -> Any:
        from tvm import topi

        shape = ctx.shape(0)
        return ctx.emit_te(lambda x: topi.reshape(x, shape), *args)


@register_op
@dataclass(frozen=True)
class Transpose(Op):
    """x with its axes permuted: out.shape[i] = x.shape[perm[i]]."""

    name: ClassVar[str] = "transpose"
    perm: tuple[int, ...] = ()

    def infer(self, x: TensorType) -> TensorType:
        if sorted(self.perm) != list(range(x.rank)):
            raise self.error(f"perm={list(self.perm)} is not a permutation of {x.rank} axes ({x})")
        return x.with_shape([x.shape[p] for p in self.perm])

    def reference(self, x: np.ndarray) -> np.ndarray:
        return np.transpose(x, self.perm)

    def compute(self, x: Any) -> Any:
        from tvm import topi

        return topi.transpose(x, list(self.perm))


@register_op
@dataclass(frozen=True)
class Expand(Op):
    """x broadcast to `shape` (numpy broadcasting; the result has the broadcast shape)."""

    name: ClassVar[str] = "expand"
    shape: tuple[Dim, ...] = ()

    def infer(self, x: TensorType) -> TensorType:
        return x.with_shape(broadcast_shapes(self.name, x.shape, self.shape))

    def reference(self, x: np.ndarray) -> np.ndarray:
        return np.broadcast_to(x, np.broadcast_shapes(x.shape, [int(d) for d in self.shape])).copy()

    def lower(self, ctx: Any, args: Any) -> Any:
        from tvm import topi

        shape = ctx.shape(0)
        return ctx.emit_te(lambda x: topi.broadcast_to(x, shape), *args)


@register_op
@dataclass(frozen=True)
class Concat(Op):
    """Inputs joined along `axis`; other dims must agree."""

    name: ClassVar[str] = "concat"
    axis: int = 0

    def infer(self, *xs: TensorType) -> TensorType:
        if not xs:
            raise self.error("needs at least one input")
        first = xs[0]
        axis = norm_axis(self.name, self.axis, first.rank)
        for x in xs[1:]:
            same = x.rank == first.rank and all(
                i == axis or dims_equal(a, b)
                for i, (a, b) in enumerate(zip(x.shape, first.shape, strict=True))
            )
            if not same or x.dtype != first.dtype:
                raise self.error(f"inputs disagree off axis {axis}: {', '.join(map(str, xs))}")
        total = sympy.Add(*(x.shape[axis] for x in xs))
        return first.with_shape([total if i == axis else d for i, d in enumerate(first.shape)])

    def reference(self, *xs: np.ndarray) -> np.ndarray:
        return np.concatenate(xs, axis=self.axis)

    def compute(self, *xs: Any) -> Any:
        from tvm import topi

        return topi.concatenate(xs, axis=norm_axis(self.name, self.axis, len(xs[0].shape)))


@register_op
@dataclass(frozen=True)
class Split(Op):
    """x cut along `axis` into pieces of `sizes` (their sum is the axis length)."""

    name: ClassVar[str] = "split"
    axis: int = 0
    sizes: tuple[Dim, ...] = ()

    def infer(self, x: TensorType) -> tuple[TensorType, ...]:
        axis = norm_axis(self.name, self.axis, x.rank)
        if not dims_equal(sympy.Add(*self.sizes), x.shape[axis]):
            raise self.error(f"sizes {list(map(str, self.sizes))} do not sum to axis {axis} of {x}")
        return tuple(
            x.with_shape([s if i == axis else d for i, d in enumerate(x.shape)]) for s in self.sizes
        )

    def reference(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        bounds = np.cumsum([int(s) for s in self.sizes])[:-1]
        return tuple(np.split(x, bounds, axis=norm_axis(self.name, self.axis, x.ndim)))

    def lower(self, ctx: Any, args: Any) -> Any:
        (x,) = args
        pieces = []
        start: Any = 0
        for i in range(len(self.sizes)):
            size = ctx.shape(i)[self.axis]
            pieces.append(ctx.emit_te(_slice_compute(self.axis, start, size), x))
            start = start + size
        return pieces


def _slice_compute(axis: int, start: Any, size: Any) -> Any:
    def compute(x: Any) -> Any:
        from tvm import te

        rank = len(x.shape)
        a = axis % rank
        shape = [size if i == a else d for i, d in enumerate(x.shape)]
        return te.compute(
            shape, lambda *i: x(*(j + start if k == a else j for k, j in enumerate(i))), name="out"
        )

    return compute


def normalize_slice(dim: Dim, start: Dim, stop: Dim, step: int) -> tuple[Dim, Dim]:
    """Python slice bounds clamped to an axis of length `dim` (static or symbolic)."""
    if isinstance(dim, int) and isinstance(start, int) and isinstance(stop, int):
        begin, end, _ = slice(start, stop, step).indices(dim)
        return begin, end
    big = 2**62

    def clamp(v: Dim, low: Dim, high: Dim) -> Dim:
        if isinstance(v, int) and v >= big // 2:
            return high
        if isinstance(v, int) and v < 0:
            v = dim + v
        return v

    if step > 0:
        return clamp(start, 0, dim), clamp(stop, 0, dim)
    return clamp(start, -1, dim - 1), clamp(stop, -1, dim - 1)


@register_op
@dataclass(frozen=True)
class Slice(Op):
    """x[start:stop:step] on each axis in `axes`; bounds already normalized (`normalize_slice`).

    For a negative step, `stop` may be -1 (the slice runs down to index 0).
    """

    name: ClassVar[str] = "slice"
    axes: tuple[int, ...] = ()
    starts: tuple[Dim, ...] = ()
    stops: tuple[Dim, ...] = ()
    steps: tuple[int, ...] = ()

    @staticmethod
    def _length(start: Dim, stop: Dim, step: int) -> Dim:
        span = (stop - start) if step > 0 else (start - stop)
        n = sympy.ceiling(sympy.sympify(span) / abs(step))
        return max(int(n), 0) if n.is_number else n

    def infer(self, x: TensorType) -> TensorType:
        if not len(self.axes) == len(self.starts) == len(self.stops) == len(self.steps):
            raise self.error("axes, starts, stops and steps must have equal length")
        if 0 in self.steps:
            raise self.error("step must not be 0")
        shape = list(x.shape)
        for axis, start, stop, step in zip(
            self.axes, self.starts, self.stops, self.steps, strict=True
        ):
            a = norm_axis(self.name, axis, x.rank)
            shape[a] = self._length(start, stop, step)
        return x.with_shape(shape)

    def reference(self, x: np.ndarray) -> np.ndarray:
        index = [slice(None)] * x.ndim
        for axis, start, stop, step in zip(
            self.axes, self.starts, self.stops, self.steps, strict=True
        ):
            end = int(stop)
            index[axis % x.ndim] = slice(int(start), None if end < 0 else end, step)
        return x[tuple(index)].copy()

    def lower(self, ctx: Any, args: Any) -> Any:
        from tvm import te

        starts = {
            a % len(ctx.out_types[0].shape): ctx.dim(s)
            for a, s in zip(self.axes, self.starts, strict=True)
        }
        steps = {
            a % len(ctx.out_types[0].shape): s for a, s in zip(self.axes, self.steps, strict=True)
        }
        shape = ctx.shape(0)

        def compute(x: Any) -> Any:
            def index(*i: Any) -> Any:
                return x(*(starts[k] + j * steps[k] if k in starts else j for k, j in enumerate(i)))

            return te.compute(shape, index, name="out")

        return ctx.emit_te(compute, *args)


@register_op
@dataclass(frozen=True)
class Gather(Op):
    """np.take(x, indices, axis): negative indices count from the end."""

    name: ClassVar[str] = "gather"
    axis: int = 0

    def infer(self, x: TensorType, indices: TensorType) -> TensorType:
        axis = norm_axis(self.name, self.axis, x.rank)
        if not indices.dtype.is_int:
            raise self.error(f"indices must be integers, got {indices}")
        return x.with_shape((*x.shape[:axis], *indices.shape, *x.shape[axis + 1 :]))

    def reference(self, x: np.ndarray, indices: np.ndarray) -> np.ndarray:
        axis = norm_axis(self.name, self.axis, x.ndim)
        n = x.shape[axis]
        if indices.size and (indices.min() < -n or indices.max() >= n):
            raise IndexError(f"gather: index out of range for axis {axis} of size {n}")
        return np.take(x, indices, axis=axis)

    def compute(self, x: Any, indices: Any) -> Any:
        from tvm import te, tirx

        axis = norm_axis(self.name, self.axis, len(x.shape))
        k = len(indices.shape)

        def body(*i: Any) -> Any:
            idx = indices(*i[axis : axis + k]).astype("int64")
            idx = tirx.if_then_else(idx < 0, idx + x.shape[axis].astype("int64"), idx)
            return x(*i[:axis], idx, *i[axis + k :])

        shape = (*x.shape[:axis], *indices.shape, *x.shape[axis + 1 :])
        return te.compute(shape, body, name="out")


@register_op
@dataclass(frozen=True)
class Arange(Op):
    """start, start + step, ... below `stop` (which may be symbolic)."""

    name: ClassVar[str] = "arange"
    start: int | float = 0
    stop: Dim | float = 0
    step: int | float = 1
    dtype: DType = DType.int64

    def infer(self) -> TensorType:
        n = sympy.ceiling((sympy.sympify(self.stop) - self.start) / self.step)
        return TensorType((max(int(n), 0) if n.is_number else n,), self.dtype)

    def reference(self) -> np.ndarray:
        return np.arange(self.start, float(self.stop), self.step).astype(self.dtype.numpy)  # type: ignore[arg-type]

    def lower(self, ctx: Any, args: Any) -> Any:
        from tvm import te, tirx

        (n,) = ctx.shape(0)
        start, step, dtype = self.start, self.step, self.dtype.tvm
        exact = isinstance(start, int) and isinstance(step, int)

        def value(i: Any) -> Any:
            if exact:
                return (i.astype("int64") * step + start).astype(dtype)
            as_f64 = i.astype("float64") * tirx.const(step, "float64")
            return (tirx.const(start, "float64") + as_f64).astype(dtype)

        return ctx.emit_te(lambda: te.compute((n,), value, name="out"))


@register_op
@dataclass(frozen=True)
class Full(Op):
    """A tensor of `shape` filled with `value`."""

    name: ClassVar[str] = "full"
    shape: tuple[Dim, ...] = ()
    value: float | int | bool = 0
    dtype: DType = DType.float32

    def infer(self) -> TensorType:
        return TensorType(self.shape, self.dtype)

    def reference(self) -> np.ndarray:
        return np.full([int(d) for d in self.shape], self.value, dtype=self.dtype.numpy)

    def lower(self, ctx: Any, args: Any) -> Any:
        from tvm import topi

        shape, value, dtype = ctx.shape(0), self.value, self.dtype.tvm
        return ctx.emit_te(lambda: topi.full(shape, dtype, value))
