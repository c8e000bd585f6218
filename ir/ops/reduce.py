"""Reductions over axes: sum, mean, max, min, prod, and argmax/argmin."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, make_dataclass
from typing import Any, ClassVar

import numpy as np

from ember.ir.op import Op, register_op
from ember.ir.ops._shapes import norm_axis
from ember.ir.types import DType, TensorType

__all__ = ["ArgMax", "ArgMin", "ReduceOp"]


@dataclass(frozen=True)
class ReduceOp(Op):
    """Reduce over `axes` (all axes when empty), keeping them as size 1 when `keepdims`."""

    axes: tuple[int, ...] = ()
    keepdims: bool = False
    np_fn: ClassVar[Callable[..., np.ndarray]]
    topi_name: ClassVar[str]

    def _axes(self, rank: int) -> tuple[int, ...]:
        axes = self.axes or tuple(range(rank))
        return tuple(sorted({norm_axis(self.name, a, rank) for a in axes}))

    def infer(self, x: TensorType) -> TensorType:
        axes = self._axes(x.rank)
        if self.name == "reduce_mean" and not x.dtype.is_float:
            raise self.error(f"input must be floating point, got {x}")
        shape = [
            1 if i in axes else d for i, d in enumerate(x.shape) if self.keepdims or i not in axes
        ]
        return x.with_shape(shape)

    def reference(self, x: np.ndarray) -> np.ndarray:
        axes = self._axes(x.ndim)
        acc = np.float32 if x.dtype.itemsize < 4 and DType.of(x.dtype).is_float else None
        out = type(self).np_fn(x.astype(acc) if acc else x, axis=axes, keepdims=self.keepdims)
        return np.asarray(out).astype(x.dtype)

    def compute(self, x: Any) -> Any:
        from tvm import topi

        axes = list(self._axes(len(x.shape)))
        if self.name == "reduce_mean":
            total = topi.sum(x, axis=axes, keepdims=self.keepdims)
            count = 1
            for a in axes:
                count = count * x.shape[a]
            return topi.divide(
                total, count.astype(x.dtype) if hasattr(count, "astype") else float(count)
            )
        return getattr(topi, type(self).topi_name)(x, axis=axes, keepdims=self.keepdims)


_REDUCE = {
    "reduce_sum": (np.sum, "sum"),
    "reduce_mean": (np.mean, "sum"),
    "reduce_max": (np.max, "max"),
    "reduce_min": (np.min, "min"),
    "reduce_prod": (np.prod, "prod"),
}
for _name, (_np_fn, _topi_name) in _REDUCE.items():
    _cls = make_dataclass(
        "".join(p.capitalize() for p in _name.split("_")),
        [],
        bases=(ReduceOp,),
        frozen=True,
        namespace={"name": _name, "np_fn": staticmethod(_np_fn), "topi_name": _topi_name,
                   "__doc__": f"{_name} over `axes`."},
    )  # fmt: skip
    globals()[_cls.__name__] = register_op(_cls)
    __all__.append(_cls.__name__)


@dataclass(frozen=True)
class _ArgReduce(Op):
    axis: int = 0
    keepdims: bool = False
    select_last_index: bool = False

    def infer(self, x: TensorType) -> TensorType:
        axis = norm_axis(self.name, self.axis, x.rank)
        shape = [1 if i == axis else d for i, d in enumerate(x.shape) if self.keepdims or i != axis]
        return TensorType(shape, DType.int64)

    def reference(self, x: np.ndarray) -> np.ndarray:
        fn = np.argmax if self.name == "argmax" else np.argmin
        axis = norm_axis(self.name, self.axis, x.ndim)
        if self.select_last_index:
            flipped = np.flip(x, axis=axis)
            out = x.shape[axis] - 1 - fn(flipped, axis=axis)
        else:
            out = fn(x, axis=axis)
        if self.keepdims:
            out = np.expand_dims(out, axis)
        return np.asarray(out).astype(np.int64)

    def compute(self, x: Any) -> Any:
        from tvm import topi

        fn = topi.argmax if self.name == "argmax" else topi.argmin
        out = fn(x, axis=[norm_axis(self.name, self.axis, len(x.shape))], keepdims=self.keepdims,
                 select_last_index=self.select_last_index)  # fmt: skip
        return topi.cast(out, "int64")


@register_op
@dataclass(frozen=True)
class ArgMax(_ArgReduce):
    """Index of the largest element along `axis` (first one, or last with select_last_index)."""

    name: ClassVar[str] = "argmax"


@register_op
@dataclass(frozen=True)
class ArgMin(_ArgReduce):
    """Index of the smallest element along `axis`."""

    name: ClassVar[str] = "argmin"
