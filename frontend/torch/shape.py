"""Converters for data movement: view/reshape, permute, expand, cat, slice, select, split,
repeat, flip, and the no-op aliases (clone, contiguous, detach) and assertion nodes."""

from __future__ import annotations

import operator
from typing import Any

import sympy
import torch

from ember.frontend.torch.context import Context
from ember.frontend.torch.registry import converter
from ember.ir import DType, Value
from ember.ir.ops import Concat, Expand, Gather, Slice, Split, Transpose, normalize_slice
from ember.ir.ops._shapes import norm_axis

aten = torch.ops.aten

_BIG = 2**62


@converter(
    aten._assert_tensor_metadata.default,
    aten._assert_scalar.default,
    aten.sym_constrain_range_for_size.default,
    aten.sym_constrain_range.default,
    aten._assert_async.msg,
    torch._check,
)
def _ignore(cx: Context, *_: Any, **__: Any) -> None:
    """Runtime checks of facts torch.export already proved for the traced shapes."""


@converter(
    aten.clone.default,
    aten.alias.default,
    aten.contiguous.default,
    aten.detach.default,
    aten.lift_fresh_copy.default,
    aten.dropout.default,
)
def _identity(cx: Context, x: Value, *_: Any, **__: Any) -> Value:
    return x


@converter(aten.copy.default)
def _copy(cx: Context, dst: Value, src: Value, non_blocking: bool = False) -> Value:
    """copy(dst, src): src's values broadcast to dst's shape, in dst's dtype."""
    out = cx.cast(src, dst.type.dtype)
    return (
        out
        if tuple(out.type.shape) == tuple(dst.type.shape)
        else cx.emit(Expand(dst.type.shape), out)
    )


@converter(operator.getitem)
def _getitem(cx: Context, xs: Any, index: int) -> Any:
    return xs[index]


@converter(
    aten.view.default,
    aten._unsafe_view.default,
    aten.reshape.default,
    aten.unsqueeze.default,
    aten.squeeze.default,
    aten.squeeze.dim,
    aten.squeeze.dims,
    aten.flatten.using_ints,
    aten.unflatten.int,
    aten.view_as.default,
)
def _reshape(cx: Context, x: Value, *_: Any) -> Value:
    return cx.reshape(x, cx.out_shape())


@converter(aten.permute.default)
def _permute(cx: Context, x: Value, dims: list[int]) -> Value:
    return cx.emit(Transpose(tuple(norm_axis("permute", d, x.type.rank) for d in dims)), x)


@converter(aten.transpose.int)
def _transpose(cx: Context, x: Value, dim0: int, dim1: int) -> Value:
    perm = list(range(x.type.rank))
    a, b = norm_axis("transpose", dim0, x.type.rank), norm_axis("transpose", dim1, x.type.rank)
    perm[a], perm[b] = perm[b], perm[a]
    return cx.emit(Transpose(tuple(perm)), x)


@converter(aten.t.default)
def _t(cx: Context, x: Value) -> Value:
    return x if x.type.rank < 2 else cx.emit(Transpose((1, 0)), x)


@converter(aten.expand.default, aten.expand_as.default, aten.broadcast_to.default)
def _expand(cx: Context, x: Value, *_: Any, **__: Any) -> Value:
    shape = cx.out_shape()
    return x if tuple(x.type.shape) == shape else cx.emit(Expand(shape), x)


@converter(aten.cat.default, aten.concat.default)
def _cat(cx: Context, xs: list[Value], dim: int = 0) -> Value:
    dtype = cx.out_dtype()
    parts = [cx.cast(x, dtype) for x in xs if not (x.type.rank == 1 and x.type.shape[0] == 0)]
    if len(parts) == 1:
        return parts[0]
    rank = parts[0].type.rank
    return cx.emit(Concat(norm_axis("cat", dim, rank)), *parts)


def slice_axis(cx: Context, x: Value, axis: int, start: Any, end: Any, step: int = 1) -> Value:
    """x[start:end:step] along `axis` with Python bounds (None, negative, huge)."""
    dim = x.type.shape[axis]
    start = 0 if start is None else start
    end = _BIG if end is None or (isinstance(end, int) and end >= _BIG // 2) else end
    if isinstance(dim, int) and isinstance(end, int) and end >= _BIG // 2:
        end = dim
    begin, stop = normalize_slice(dim, start, end, step)
    if isinstance(dim, int) and isinstance(stop, int) and isinstance(begin, int):
        stop = min(stop, dim)
    if begin == 0 and sympy.simplify(sympy.sympify(stop) - dim) == 0 and step == 1:
        return x
    return cx.emit(Slice((axis,), (begin,), (stop,), (step,)), x)


@converter(aten.slice.Tensor)
def _slice(
    cx: Context, x: Value, dim: int = 0, start: Any = None, end: Any = None, step: int = 1
) -> Value:
    out = slice_axis(cx, x, norm_axis("slice", dim, x.type.rank), start, end, step)
    return cx.reshape(out, cx.out_shape())


@converter(aten.select.int)
def _select(cx: Context, x: Value, dim: int, index: Any) -> Value:
    axis = norm_axis("select", dim, x.type.rank)
    return cx.emit(Gather(axis), x, cx.const(index, DType.int64))


@converter(aten.split_with_sizes.default, aten.split.Tensor, aten.split.sizes)
def _split(cx: Context, x: Value, sizes: Any, dim: int = 0) -> tuple[Value, ...]:
    axis = norm_axis("split", dim, x.type.rank)
    pieces = tuple(cx.dim(m.shape[axis]) for m in cx.out_meta())
    if len(pieces) == 1:
        return (x,)
    return cx.emit_multi(Split(axis, pieces), x)


@converter(aten.unbind.int)
def _unbind(cx: Context, x: Value, dim: int = 0) -> tuple[Value, ...]:
    axis = norm_axis("unbind", dim, x.type.rank)
    parts = cx.emit_multi(Split(axis, (1,) * int(x.type.shape[axis])), x)
    return tuple(cx.reshape(p, cx.out_shape(i)) for i, p in enumerate(parts))


@converter(aten.repeat.default)
def _repeat(cx: Context, x: Value, repeats: list[Any]) -> Value:
    lead = len(repeats) - x.type.rank
    x = cx.reshape(x, (1,) * lead + tuple(x.type.shape))
    interleaved: list[Any] = []
    target: list[Any] = []
    for r, d in zip(repeats, x.type.shape, strict=True):
        interleaved += [1, d]
        target += [cx.dim(r), d]
    spread = cx.emit(Expand(tuple(target)), cx.reshape(x, tuple(interleaved)))
    return cx.reshape(spread, cx.out_shape())


@converter(aten.flip.default)
def _flip(cx: Context, x: Value, dims: list[int]) -> Value:
    axes = tuple(norm_axis("flip", d, x.type.rank) for d in dims)
    starts = tuple(x.type.shape[a] - 1 for a in axes)
    return cx.emit(Slice(axes, starts, (-1,) * len(axes), (-1,) * len(axes)), x)
