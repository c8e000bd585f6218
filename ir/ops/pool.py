"""Sliding-window pooling over the spatial axes of [N, C, *spatial]: max_pool (and where each
maximum came from, max_pool_indices), avg_pool, lp_pool.

`pads` is (before_0, ..., before_k, after_0, ..., after_k). With `ceil_mode` the last window
may run past the padding, but it must start inside the input or its leading padding.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import sympy

from ember.ir.op import Op, register_op
from ember.ir.ops.conv import _strided, window_out_dim
from ember.ir.types import Dim, TensorType

__all__ = ["AvgPool", "LpPool", "MaxPool", "MaxPoolIndices"]


@dataclass(frozen=True)
class _Pool(Op):
    kernel: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()
    dilations: tuple[int, ...] = ()
    ceil_mode: bool = False

    def _out_dim(self, size: Dim, i: int) -> Dim:
        spatial = len(self.kernel)
        pad = self.pads[i] + self.pads[i + spatial]
        out = window_out_dim(
            size, self.kernel[i], self.strides[i], pad, self.dilations[i], self.ceil_mode
        )
        if self.ceil_mode:  # drop a last window that would start in the trailing padding
            starts_past = sympy.sympify((out - 1) * self.strides[i]) >= size + self.pads[i]
            if starts_past is sympy.true:
                out = out - 1
        return out

    def infer(self, x: TensorType) -> TensorType:
        spatial = x.rank - 2
        if (
            spatial < 1
            or not len(self.kernel) == len(self.strides) == len(self.dilations) == spatial
        ):
            raise self.error(
                f"kernel/strides/dilations must cover the {spatial} spatial axes of {x}"
            )
        if len(self.pads) != 2 * spatial:
            raise self.error(f"pads must have {2 * spatial} entries, got {list(self.pads)}")
        return x.with_shape(
            (*x.shape[:2], *(self._out_dim(x.shape[2 + i], i) for i in range(spatial)))
        )

    def _windows(
        self, x: np.ndarray
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """Per kernel offset: the strided view of the padded input, where it is real input, and
        where it is input or declared padding (ceil_mode windows may reach past both)."""
        spatial = x.ndim - 2
        out_shape = [int(d) for d in self.infer(TensorType(x.shape, x.dtype)).shape[2:]]
        widths = []
        for i in range(spatial):
            reach = (
                (out_shape[i] - 1) * self.strides[i] + (self.kernel[i] - 1) * self.dilations[i] + 1
            )
            widths.append((self.pads[i], max(reach - x.shape[2 + i] - self.pads[i], 0)))
        xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0), *widths])
        real = np.pad(np.ones(x.shape[2:], dtype=bool), widths)
        declared = np.zeros_like(real)
        declared[
            tuple(
                slice(0, n + self.pads[i] + self.pads[i + spatial])
                for i, n in enumerate(x.shape[2:])
            )
        ] = True
        views: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
        for k in itertools.product(*(range(n) for n in self.kernel)):
            window = tuple(
                _strided(k[i] * self.dilations[i], out_shape[i], self.strides[i])
                for i in range(spatial)
            )  # fmt: skip
            views[0].append(xp[(slice(None), slice(None), *window)])
            views[1].append(real[window])
            views[2].append(declared[window])
        return views

    def _te_shape(self, x: Any) -> list[Any]:
        from tvm import tirx

        shape = [x.shape[0], x.shape[1]]
        spatial = len(x.shape) - 2
        for i in range(spatial):
            size = x.shape[2 + i]
            if isinstance(size, tirx.IntImm):
                shape.append(int(self._out_dim(int(size), i)))
                continue
            span = (
                size
                + self.pads[i]
                + self.pads[i + spatial]
                - (self.kernel[i] - 1) * self.dilations[i]
                - 1
            )
            rounding = self.strides[i] - 1 if self.ceil_mode else 0
            shape.append(tirx.floordiv(span + rounding, self.strides[i]) + 1)
        return shape

    def _te_reduce(self, x: Any, combine: Any) -> Any:
        """te.compute over the output; `combine(value, real, declared, axes)` reduces a window."""
        from tvm import te, tirx

        spatial = len(x.shape) - 2
        rk = [te.reduce_axis((0, self.kernel[i]), name=f"rk{i}") for i in range(spatial)]

        def body(n: Any, c: Any, *o: Any) -> Any:
            pos = [
                o[i] * self.strides[i] + rk[i] * self.dilations[i] - self.pads[i]
                for i in range(spatial)
            ]
            real = tirx.all(*[tirx.all(p >= 0, p < x.shape[2 + i]) for i, p in enumerate(pos)])
            declared = tirx.all(
                *[p < x.shape[2 + i] + self.pads[i + spatial] for i, p in enumerate(pos)]
            )
            safe = [tirx.if_then_else(real, p, 0) for p in pos]
            return combine(x(n, c, *safe), real, declared, rk)

        return te.compute(self._te_shape(x), body, name="pool")


@register_op
@dataclass(frozen=True)
class MaxPool(_Pool):
    """The largest input element in each window (padding never wins)."""

    name: ClassVar[str] = "max_pool"

    def reference(self, x: np.ndarray) -> np.ndarray:
        values, real, _ = self._windows(x)
        stacked = np.stack([np.where(r, v, -np.inf) for v, r in zip(values, real, strict=True)])
        return stacked.max(axis=0).astype(x.dtype)

    def compute(self, x: Any) -> Any:
        from tvm import te, tirx

        lowest = tirx.min_value(x.dtype)
        return self._te_reduce(
            x, lambda v, real, declared, rk: te.max(tirx.if_then_else(real, v, lowest), axis=rk)
        )


@register_op
@dataclass(frozen=True)
class MaxPoolIndices(_Pool):
    """Where max_pool's maximum of each window is: its flat index into x (ONNX MaxPool's
    Indices), row-major, or with the spatial axes column-major when `column_major`; the first
    of equal maxima wins."""

    name: ClassVar[str] = "max_pool_indices"
    column_major: bool = False

    def infer(self, x: TensorType) -> TensorType:
        return super().infer(x).with_dtype("int64")

    def _flat(self, n: Any, c: Any, pos: list[Any], shape: tuple[Any, ...]) -> Any:
        spatial = shape[2:]
        order = list(reversed(range(len(spatial)))) if self.column_major else range(len(spatial))
        flat = n * shape[1] + c
        for i in order:
            flat = flat * spatial[i] + pos[i]
        return flat

    def reference(self, x: np.ndarray) -> np.ndarray:
        values, real, _ = self._windows(x)
        stacked = np.stack([np.where(r, v, -np.inf) for v, r in zip(values, real, strict=True)])
        best = stacked.argmax(axis=0)  # the kernel offset of the first maximum
        offsets = list(itertools.product(*(range(k) for k in self.kernel)))
        out = np.zeros(best.shape, dtype=np.int64)
        for index in np.ndindex(*best.shape):
            n, c, *o = index
            k = offsets[best[index]]
            pos = [o[i] * self.strides[i] + k[i] * self.dilations[i] - self.pads[i]
                   for i in range(len(k))]  # fmt: skip
            out[index] = self._flat(n, c, pos, x.shape)
        return out

    def compute(self, x: Any) -> Any:
        from tvm import te, tirx

        def combine(a: Any, b: Any) -> Any:
            keep = a[1] >= b[1]
            return tirx.Select(keep, a[0], b[0]), tirx.Select(keep, a[1], b[1])

        def identity(index_type: Any, value_type: Any) -> Any:
            return tirx.const(-1, index_type), tirx.min_value(value_type)

        argmax = te.comm_reducer(combine, identity, name="argmax")
        spatial = len(x.shape) - 2
        rk = [te.reduce_axis((0, self.kernel[i]), name=f"rk{i}") for i in range(spatial)]
        shape = [d.astype("int64") for d in x.shape]

        def body(n: Any, c: Any, *o: Any) -> Any:
            pos = [o[i] * self.strides[i] + rk[i] * self.dilations[i] - self.pads[i]
                   for i in range(spatial)]  # fmt: skip
            real = tirx.all(*[tirx.all(p >= 0, p < x.shape[2 + i]) for i, p in enumerate(pos)])
            safe = [tirx.if_then_else(real, p, 0) for p in pos]
            value = tirx.if_then_else(real, x(n, c, *safe), tirx.min_value(x.dtype))
            flat = self._flat(n.astype("int64"), c.astype("int64"),
                              [p.astype("int64") for p in pos], tuple(shape))  # fmt: skip
            return argmax((flat, value), axis=rk)

        indices, _ = te.compute(self._te_shape(x), body, name="pool")
        return indices


@register_op
@dataclass(frozen=True)
class AvgPool(_Pool):
    """The mean of each window; the divisor counts padding only with `count_include_pad`."""

    name: ClassVar[str] = "avg_pool"
    count_include_pad: bool = False

    def infer(self, x: TensorType) -> TensorType:
        if not x.dtype.is_float:
            raise self.error(f"input must be floating point, got {x}")
        return super().infer(x)

    def reference(self, x: np.ndarray) -> np.ndarray:
        values, real, declared = self._windows(x)
        counted = declared if self.count_include_pad else real
        total = sum(np.where(r, v, 0.0) for v, r in zip(values, real, strict=True))
        count = sum(c.astype(np.float64) for c in counted)
        return (total / count).astype(x.dtype)

    def compute(self, x: Any) -> Any:
        from tvm import te, tirx

        zero, one = tirx.const(0, "float32"), tirx.const(1, "float32")

        def total(v: Any, real: Any, declared: Any, rk: Any) -> Any:
            return te.sum(tirx.if_then_else(real, v.astype("float32"), zero), axis=rk)

        def count(v: Any, real: Any, declared: Any, rk: Any) -> Any:
            return te.sum(
                tirx.if_then_else(declared if self.count_include_pad else real, one, zero), axis=rk
            )

        sums, counts = self._te_reduce(x, total), self._te_reduce(x, count)
        return te.compute(
            sums.shape, lambda *i: (sums(*i) / counts(*i)).astype(x.dtype), name="out"
        )


@register_op
@dataclass(frozen=True)
class LpPool(_Pool):
    """(sum over each window of |x|^p)^(1/p); padding contributes zeros."""

    name: ClassVar[str] = "lp_pool"
    p: int = 2

    def reference(self, x: np.ndarray) -> np.ndarray:
        values, real, _ = self._windows(x)
        total = sum(
            np.where(r, np.abs(v) ** self.p, 0.0) for v, r in zip(values, real, strict=True)
        )
        return (total ** (1.0 / self.p)).astype(x.dtype)

    def compute(self, x: Any) -> Any:
        from tvm import te, tirx

        acc = "float64" if x.dtype == "float64" else "float32"
        zero, p = tirx.const(0, acc), tirx.const(self.p, acc)

        def total(v: Any, real: Any, declared: Any, rk: Any) -> Any:
            return te.sum(
                tirx.if_then_else(real, tirx.power(tirx.abs(v.astype(acc)), p), zero), axis=rk
            )

        sums = self._te_reduce(x, total)
        inv = tirx.const(1.0 / self.p, acc)
        return te.compute(
            sums.shape, lambda *i: tirx.power(sums(*i), inv).astype(x.dtype), name="out"
        )
