"""Indexing by data: gather_elements, gather_nd, scatter_elements, scatter_nd, one_hot, topk,
trilu, and the scans cumsum and cumprod."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ember.ir.op import Op, register_op
from ember.ir.ops._shapes import norm_axis
from ember.ir.types import Dim, DType, TensorType

__all__ = [
    "CumProd",
    "CumSum",
    "GatherElements",
    "GatherNd",
    "OneHot",
    "ScatterElements",
    "ScatterNd",
    "TopK",
    "Trilu",
]

_REDUCTIONS = ("none", "add", "mul", "max", "min")


def _on_gpu() -> bool:
    """Whether the op is being lowered for a GPU target (codegen lowers inside `with target`)."""
    from tvm.target import Target

    current = Target.current(allow_none=True)
    return current is not None and "gpu" in current.keys


def _check_indices(op: Op, indices: TensorType) -> None:
    if not indices.dtype.is_int:
        raise op.error(f"indices must be integers, got {indices}")


def _wrap(indices: np.ndarray, size: int, op: str) -> np.ndarray:
    """Negative indices count from the end; anything else out of range is an error."""
    if indices.size and (indices.min() < -size or indices.max() >= size):
        raise IndexError(f"{op}: index out of range for an axis of size {size}")
    return np.where(indices < 0, indices + size, indices).astype(np.int64)


@register_op
@dataclass(frozen=True)
class GatherElements(Op):
    """out[i][j][k] = x[index[i][j][k]][j][k] for axis 0 (np.take_along_axis)."""

    name: ClassVar[str] = "gather_elements"
    axis: int = 0

    def infer(self, x: TensorType, indices: TensorType) -> TensorType:
        _check_indices(self, indices)
        norm_axis(self.name, self.axis, x.rank)
        if indices.rank != x.rank:
            raise self.error(f"indices must have the rank of the data: {x} and {indices}")
        return x.with_shape(indices.shape)

    def reference(self, x: np.ndarray, indices: np.ndarray) -> np.ndarray:
        axis = norm_axis(self.name, self.axis, x.ndim)
        return np.take_along_axis(x, _wrap(indices, x.shape[axis], self.name), axis=axis)

    def compute(self, x: Any, indices: Any) -> Any:
        from tvm import te, tirx

        axis = norm_axis(self.name, self.axis, len(x.shape))

        def body(*i: Any) -> Any:
            idx = indices(*i).astype("int64")
            idx = tirx.if_then_else(idx < 0, idx + x.shape[axis].astype("int64"), idx)
            return x(*(idx if k == axis else v for k, v in enumerate(i)))

        return te.compute(indices.shape, body, name="out")


@register_op
@dataclass(frozen=True)
class GatherNd(Op):
    """Gather slices of x by index tuples in the last axis of `indices` (ONNX GatherND)."""

    name: ClassVar[str] = "gather_nd"
    batch_dims: int = 0

    def infer(self, x: TensorType, indices: TensorType) -> TensorType:
        _check_indices(self, indices)
        depth = indices.shape[-1] if indices.rank else None
        if not isinstance(depth, int) or depth + self.batch_dims > x.rank:
            raise self.error(f"the last axis of {indices} must be a static size <= rank of {x}")
        return x.with_shape((*indices.shape[:-1], *x.shape[self.batch_dims + depth :]))

    def reference(self, x: np.ndarray, indices: np.ndarray) -> np.ndarray:
        b = self.batch_dims
        batch = x.shape[:b]
        depth = indices.shape[-1]
        flat_x = x.reshape((-1, *x.shape[b:]))
        flat_i = indices.reshape((-1, *indices.shape[b:-1], depth))
        out = []
        for n in range(flat_x.shape[0]):
            sizes = flat_x.shape[1 : 1 + depth]
            idx = np.stack(
                [_wrap(flat_i[n][..., d], sizes[d], self.name) for d in range(depth)], -1
            )
            out.append(flat_x[n][tuple(np.moveaxis(idx, -1, 0))])
        return np.stack(out).reshape(*batch, *indices.shape[b:-1], *x.shape[b + depth :])

    def compute(self, x: Any, indices: Any) -> Any:
        from tvm import te, tirx

        b = self.batch_dims
        depth = int(indices.shape[-1])
        lead = len(indices.shape) - 1

        def body(*i: Any) -> Any:
            coords = []
            for d in range(depth):
                idx = indices(*i[:lead], d).astype("int64")
                size = x.shape[b + d].astype("int64")
                coords.append(tirx.if_then_else(idx < 0, idx + size, idx))
            return x(*i[:b], *coords, *i[lead:])

        return te.compute((*indices.shape[:-1], *x.shape[b + depth :]), body, name="out")


def _scatter_reduce(reduction: str, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    if reduction == "add":
        return old + new
    if reduction == "mul":
        return old * new
    if reduction == "max":
        return np.maximum(old, new)
    if reduction == "min":
        return np.minimum(old, new)
    return new


@register_op
@dataclass(frozen=True)
class ScatterElements(Op):
    """A copy of x with out[index[i][j]][j] = updates[i][j] for axis 0; `reduction` combines."""

    name: ClassVar[str] = "scatter_elements"
    axis: int = 0
    reduction: str = "none"

    def infer(self, x: TensorType, indices: TensorType, updates: TensorType) -> TensorType:
        _check_indices(self, indices)
        norm_axis(self.name, self.axis, x.rank)
        if self.reduction not in _REDUCTIONS:
            raise self.error(f"reduction must be one of {_REDUCTIONS}, got {self.reduction!r}")
        if updates.dtype != x.dtype or len(updates.shape) != len(indices.shape):
            raise self.error(f"updates {updates} must match indices {indices} and data {x}")
        return x

    def reference(self, x: np.ndarray, indices: np.ndarray, updates: np.ndarray) -> np.ndarray:
        axis = norm_axis(self.name, self.axis, x.ndim)
        idx = _wrap(indices, x.shape[axis], self.name)
        out = x.copy()
        for pos in np.ndindex(*indices.shape):
            target = tuple(int(idx[pos]) if k == axis else p for k, p in enumerate(pos))
            out[target] = _scatter_reduce(self.reduction, out[target], updates[pos])
        return out

    def compute(self, x: Any, indices: Any, updates: Any) -> Any:
        from tvm import topi

        axis = norm_axis(self.name, self.axis, len(x.shape))
        mode = "update" if self.reduction == "none" else self.reduction
        # topi's generic version is one serial loop nest: GPU builds take its GPU kernel
        scatter = topi.gpu.scatter_elements if _on_gpu() else topi.scatter_elements
        return scatter(x, indices, updates, axis, mode)


@register_op
@dataclass(frozen=True)
class ScatterNd(Op):
    """A copy of x with the slices addressed by `indices` (last axis: a coordinate) replaced."""

    name: ClassVar[str] = "scatter_nd"
    reduction: str = "none"

    def infer(self, x: TensorType, indices: TensorType, updates: TensorType) -> TensorType:
        _check_indices(self, indices)
        if self.reduction not in _REDUCTIONS:
            raise self.error(f"reduction must be one of {_REDUCTIONS}, got {self.reduction!r}")
        depth = indices.shape[-1] if indices.rank else None
        if not isinstance(depth, int) or depth > x.rank or updates.dtype != x.dtype:
            raise self.error(f"bad operands: data {x}, indices {indices}, updates {updates}")
        return x

    def reference(self, x: np.ndarray, indices: np.ndarray, updates: np.ndarray) -> np.ndarray:
        out = x.copy()
        depth = indices.shape[-1]
        for pos in np.ndindex(*indices.shape[:-1]):
            target = tuple(int(_wrap(indices[pos][d], x.shape[d], self.name)) for d in range(depth))
            out[target] = _scatter_reduce(self.reduction, out[target], updates[pos])
        return out

    def compute(self, x: Any, indices: Any, updates: Any) -> Any:
        from tvm import topi

        mode = "update" if self.reduction == "none" else self.reduction
        rank = len(indices.shape)
        moved = topi.transpose(indices, [rank - 1, *range(rank - 1)])  # topi wants depth first
        return topi.scatter_nd(x, moved, updates, mode)


@register_op
@dataclass(frozen=True)
class OneHot(Op):
    """out[..., j, ...] = on if indices[...] == j (negative indices count from the end) else off."""

    name: ClassVar[str] = "one_hot"
    depth: int = 1
    axis: int = -1
    on_value: float | int | bool = 1
    off_value: float | int | bool = 0
    dtype: DType = DType.float32

    def infer(self, indices: TensorType) -> TensorType:
        _check_indices(self, indices)
        axis = norm_axis(self.name, self.axis, indices.rank + 1)
        shape = list(indices.shape)
        shape.insert(axis, self.depth)
        return TensorType(shape, self.dtype)

    def reference(self, indices: np.ndarray) -> np.ndarray:
        axis = norm_axis(self.name, self.axis, indices.ndim + 1)
        idx = np.where(indices < 0, indices + self.depth, indices)
        hot = np.expand_dims(idx, axis) == np.arange(self.depth).reshape(
            [-1 if k == axis else 1 for k in range(indices.ndim + 1)]
        )
        return np.where(hot, self.on_value, self.off_value).astype(self.dtype.numpy)

    def compute(self, indices: Any) -> Any:
        from tvm import te, tirx

        axis = norm_axis(self.name, self.axis, len(indices.shape) + 1)
        on = tirx.const(self.on_value, self.dtype.tvm)
        off = tirx.const(self.off_value, self.dtype.tvm)
        shape = list(indices.shape)
        shape.insert(axis, self.depth)

        def body(*i: Any) -> Any:
            idx = indices(*i[:axis], *i[axis + 1 :]).astype("int64")
            idx = tirx.if_then_else(idx < 0, idx + self.depth, idx)
            return tirx.if_then_else(idx == i[axis].astype("int64"), on, off)

        return te.compute(shape, body, name="out")


@register_op
@dataclass(frozen=True)
class TopK(Op):
    """The k largest (or smallest) entries along `axis` and their int64 indices; ties keep the
    lower index first. Outputs are sorted."""

    name: ClassVar[str] = "topk"
    k: Dim = 1
    axis: int = -1
    largest: bool = True

    def infer(self, x: TensorType) -> tuple[TensorType, TensorType]:
        axis = norm_axis(self.name, self.axis, x.rank)
        if isinstance(self.k, int) and isinstance(x.shape[axis], int) and self.k > x.shape[axis]:
            raise self.error(f"k={self.k} exceeds axis {axis} of {x}")
        shape = [self.k if i == axis else d for i, d in enumerate(x.shape)]
        return x.with_shape(shape), TensorType(shape, DType.int64)

    def reference(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        axis = norm_axis(self.name, self.axis, x.ndim)
        keys = x.astype(np.float64)
        order = np.argsort(-keys if self.largest else keys, axis=axis, kind="stable")
        order = np.take(order, np.arange(int(self.k)), axis=axis)
        return np.take_along_axis(x, order, axis=axis), order.astype(np.int64)

    def compute(self, x: Any) -> Any:
        from tvm import topi

        axis = norm_axis(self.name, self.axis, len(x.shape))
        # topi's generic topk calls a CPU library function: GPU builds take topi's GPU sort
        topk = topi.gpu.topk if _on_gpu() else topi.topk
        values, indices = topk(
            x, self.k, axis, ret_type="both", is_ascend=not self.largest, dtype="int64"
        )
        return values, indices


@register_op
@dataclass(frozen=True)
class Trilu(Op):
    """The upper (`upper`) or lower triangle of the last two axes, from diagonal `k` on."""

    name: ClassVar[str] = "trilu"
    upper: bool = True
    k: int = 0

    def infer(self, x: TensorType) -> TensorType:
        if x.rank < 2:
            raise self.error(f"input must have rank >= 2, got {x}")
        return x

    def reference(self, x: np.ndarray) -> np.ndarray:
        out = np.triu(x, self.k) if self.upper else np.tril(x, self.k)
        return out.astype(x.dtype)

    def compute(self, x: Any) -> Any:
        from tvm import te, tirx

        zero = tirx.const(0, x.dtype)

        def body(*i: Any) -> Any:
            row, col = i[-2].astype("int64"), i[-1].astype("int64")
            keep = col - row >= self.k if self.upper else col - row <= self.k
            return tirx.if_then_else(keep, x(*i), zero)

        return te.compute(x.shape, body, name="out")


@dataclass(frozen=True)
class _Scan(Op):
    axis: int = 0
    exclusive: bool = False
    reverse: bool = False
    np_fn: ClassVar[Any]

    def infer(self, x: TensorType) -> TensorType:
        norm_axis(self.name, self.axis, x.rank)
        return x

    def reference(self, x: np.ndarray) -> np.ndarray:
        axis = norm_axis(self.name, self.axis, x.ndim)
        v = np.flip(x, axis) if self.reverse else x
        out = type(self).np_fn(v, axis=axis, dtype=x.dtype)
        if self.exclusive:
            identity = np.ones_like if self.name == "cumprod" else np.zeros_like
            first = identity(np.take(out, [0], axis=axis))
            out = np.concatenate(
                [first, np.take(out, np.arange(x.shape[axis] - 1), axis=axis)], axis
            )
        return np.flip(out, axis) if self.reverse else out

    def compute(self, x: Any) -> Any:
        from tvm import te, tirx

        axis = norm_axis(self.name, self.axis, len(x.shape))
        n = x.shape[axis]
        r = te.reduce_axis((0, n), name="r")
        identity = tirx.const(1 if self.name == "cumprod" else 0, x.dtype)
        if self.name == "cumprod":
            reducer = te.comm_reducer(lambda a, b: a * b, lambda t: tirx.const(1, t), name="prod")
        else:
            reducer = te.sum

        def body(*i: Any) -> Any:
            pos = i[axis]
            if self.reverse:
                cond = r > pos if self.exclusive else r >= pos
            else:
                cond = r < pos if self.exclusive else r <= pos
            src = x(*(r if k == axis else v for k, v in enumerate(i)))
            return reducer(tirx.if_then_else(cond, src, identity), axis=r)

        return te.compute(x.shape, body, name="out")


@register_op
@dataclass(frozen=True)
class CumSum(_Scan):
    """Running sum along `axis`; `exclusive` leaves out the current element, `reverse` runs
    from the end."""

    name: ClassVar[str] = "cumsum"
    np_fn: ClassVar[Any] = staticmethod(np.cumsum)


@register_op
@dataclass(frozen=True)
class CumProd(_Scan):
    """Running product along `axis` (same options as cumsum)."""

    name: ClassVar[str] = "cumprod"
    np_fn: ClassVar[Any] = staticmethod(np.cumprod)
