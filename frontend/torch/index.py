"""Converters for indexing by tensors: embedding, index_select, gather, advanced indexing
(`x[i, j]`, aten.index.Tensor), index_put and scatter."""

from __future__ import annotations

from typing import Any

import torch

from ember.errors import UnsupportedError
from ember.frontend.torch.context import Context
from ember.frontend.torch.elementwise import binary
from ember.frontend.torch.registry import converter
from ember.ir import DType, Value
from ember.ir.ops import Concat, Expand, Gather, Transpose
from ember.ir.ops._shapes import broadcast_shapes, norm_axis
from ember.ir.ops.index import GatherElements, ScatterElements, ScatterNd

aten = torch.ops.aten


@converter(aten.embedding.default)
def _embedding(cx: Context, weight: Value, indices: Value, *_: Any) -> Value:
    return cx.emit(Gather(0), weight, indices)


@converter(aten.index_select.default)
def _index_select(cx: Context, x: Value, dim: int, index: Value) -> Value:
    return cx.emit(Gather(norm_axis("index_select", dim, x.type.rank)), x, index)


@converter(aten.gather.default)
def _gather(cx: Context, x: Value, dim: int, index: Value, sparse_grad: bool = False) -> Value:
    return cx.emit(GatherElements(norm_axis("gather", dim, x.type.rank)), x, index)


def _wrapped(cx: Context, index: Value, size: Any) -> Value:
    """Indices with negatives counted from the end: index mod size (floor mod)."""
    if index.type.dtype is DType.bool:
        raise UnsupportedError("boolean-mask indexing is data-dependent (use torch.where)")
    index = cx.cast(index, DType.int64)
    return binary(cx, "mod", index, cx.const(size, DType.int64))


@converter(aten.index.Tensor)
def _index(cx: Context, x: Value, indices: list[Value | None]) -> Value:
    """x[i0, i1, ...] with broadcasting index tensors (numpy advanced indexing)."""
    axes = [a for a, i in enumerate(indices) if i is not None]
    if len(axes) == 1:
        (axis,) = axes
        return cx.emit(Gather(axis), x, _wrapped(cx, indices[axis], x.type.shape[axis]))
    adjacent = axes == list(range(axes[0], axes[-1] + 1))
    if not adjacent:  # numpy moves the indexed axes to the front
        rest = [a for a in range(x.type.rank) if a not in axes]
        x = cx.emit(Transpose((*axes, *rest)), x)
        indices = [indices[a] for a in axes]
        axes = list(range(len(axes)))
    first = axes[0]
    linear = _linear_index(cx, x, axes, [indices[a] for a in axes])
    shape = x.type.shape
    merged = (*shape[:first], _product(shape[a] for a in axes), *shape[axes[-1] + 1 :])
    return cx.emit(Gather(first), cx.reshape(x, merged), linear)


def _product(dims: Any) -> Any:
    total: Any = 1
    for d in dims:
        total = total * d
    return total


def _linear_index(cx: Context, x: Value, axes: list[int], indices: list[Value]) -> Value:
    """Row-major flat index of the indexed axes (which are adjacent)."""
    linear: Value | None = None
    for axis, index in zip(axes, indices, strict=True):
        wrapped = _wrapped(cx, index, x.type.shape[axis])
        linear = (
            wrapped
            if linear is None
            else binary(
                cx,
                "add",
                binary(cx, "mul", linear, cx.const(x.type.shape[axis], DType.int64)),
                wrapped,
            )
        )
    assert linear is not None
    return linear


@converter(aten.index_put.default, aten._unsafe_index_put.default)
def _index_put(
    cx: Context, x: Value, indices: list[Value | None], values: Value, accumulate: bool = False
) -> Value:
    """x[i0, ..., ik] = values over the leading k axes, as scatter_nd."""
    if any(i is None for i in indices):
        raise UnsupportedError("index_put with a None index (x[:, i] = v)")
    k = len(indices)
    wrapped = [_wrapped(cx, i, x.type.shape[a]) for a, i in enumerate(indices)]
    batch = broadcast_shapes("index_put", *(i.type.shape for i in wrapped))
    columns = [
        cx.reshape(cx.emit(Expand(batch), i) if i.type.shape != batch else i, (*batch, 1))
        for i in wrapped
    ]
    coords = columns[0] if k == 1 else cx.emit(Concat(-1), *columns)
    update_shape = (*batch, *x.type.shape[k:])
    updates = cx.cast(values, x.type.dtype)
    if tuple(updates.type.shape) != update_shape:
        updates = cx.emit(Expand(update_shape), updates)
    return cx.emit(ScatterNd("add" if accumulate else "none"), x, coords, updates)


@converter(aten.scatter.src, aten.scatter.value, aten.scatter_add.default, aten.scatter.reduce)
def _scatter(
    cx: Context, x: Value, dim: int, index: Value, src: Any, reduce: str | None = None
) -> Value:
    axis = norm_axis("scatter", dim, x.type.rank)
    if not isinstance(src, Value):
        src = cx.emit(Expand(index.type.shape), cx.const(src, x.type.dtype))
    mode = (
        "add"
        if cx.node.target is aten.scatter_add.default
        else {None: "none", "add": "add", "multiply": "mul"}[reduce]
    )
    return cx.emit(ScatterElements(axis, mode), x, index, cx.cast(src, x.type.dtype))
