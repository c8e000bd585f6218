"""Converters for ONNX shape and data-movement ops: Reshape, Squeeze, Concat, Split, Slice,
Gather, Expand, Tile, Shape, Constant, Range, DepthToSpace, ..."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sympy

from ember.errors import UnsupportedError
from ember.frontend.onnx.context import Context, Converter, OnnxNode, onnx_dtype
from ember.ir import DType, Value, ops
from ember.ir.ops._shapes import norm_axis
from ember.ir.types import Dim

__all__ = ["CONVERTERS", "reshape"]


def _x(node: OnnxNode, i: int = 0) -> Value:
    v = node.input(i)
    if v is None:
        raise UnsupportedError(f"{node.op_type} node {node.name!r}: input {i} is missing")
    return v


def reshape(ctx: Context, x: Value, shape: Sequence[Dim]) -> Value:
    """x reshaped, or x itself when the shape is unchanged."""
    if tuple(shape) == x.type.shape:
        return x
    return ctx.emit(ops.Reshape(tuple(shape)), x)


def _axes(ctx: Context, node: OnnxNode, index: int) -> tuple[int, ...] | None:
    """An axes list given as input `index` (opset >= 13) or as the `axes` attribute."""
    v = node.input(index)
    if v is not None:
        return tuple(int(a) for a in ctx.static(v, node, "axes").reshape(-1))
    axes = node.attr("axes")
    return None if axes is None else tuple(axes)


def _reshape(ctx: Context, node: OnnxNode) -> Value:
    x = _x(node)
    shape = list(ctx.dims(_x(node, 1), node, "shape"))
    if not node.attr("allowzero", 0):
        shape = [x.type.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return reshape(ctx, x, shape)


def _flatten(ctx: Context, node: OnnxNode) -> Value:
    x = _x(node)
    axis = node.attr("axis", 1)
    axis = axis + x.type.rank if axis < 0 else axis
    return reshape(ctx, x, (sympy.Mul(*x.type.shape[:axis]), sympy.Mul(*x.type.shape[axis:])))


def _squeeze(ctx: Context, node: OnnxNode) -> Value:
    x = _x(node)
    axes = _axes(ctx, node, 1)
    if axes is None:
        axes = tuple(i for i, d in enumerate(x.type.shape) if d == 1)
    drop = {norm_axis("Squeeze", a, x.type.rank) for a in axes}
    return reshape(ctx, x, [d for i, d in enumerate(x.type.shape) if i not in drop])


def _unsqueeze(ctx: Context, node: OnnxNode) -> Value:
    x = _x(node)
    axes = _axes(ctx, node, 1) or ()
    rank = x.type.rank + len(axes)
    new = {norm_axis("Unsqueeze", a, rank) for a in axes}
    dims = iter(x.type.shape)
    return reshape(ctx, x, [1 if i in new else next(dims) for i in range(rank)])


def _concat(ctx: Context, node: OnnxNode) -> Value:
    values = [v for v in node.inputs if v is not None]
    non_empty = [v for v in values if v.type.numel != 0] or values[:1]
    if len(non_empty) == 1:
        return non_empty[0]
    return ctx.emit(ops.Concat(node.attr("axis", 0)), *non_empty)


def _split(ctx: Context, node: OnnxNode) -> Sequence[Value]:
    x = _x(node)
    axis = norm_axis("Split", node.attr("axis", 0), x.type.rank)
    split = node.input(1)
    if split is not None:
        sizes: tuple[Dim, ...] = ctx.dims(split, node, "split")
    elif node.attr("split") is not None:
        sizes = tuple(node.attr("split"))
    else:
        count = node.attr("num_outputs", node.num_outputs)
        dim = x.type.shape[axis]
        if not isinstance(dim, int):
            sizes = (dim / count,) * count
        else:
            chunk = -(-dim // count)
            sizes = tuple(min(chunk, dim - i * chunk) for i in range(count))
    return ctx.emit_multi(ops.Split(axis, sizes), x)


def _slice(ctx: Context, node: OnnxNode) -> Value:
    x = _x(node)
    starts = ctx.dims(_x(node, 1), node, "starts")
    ends = ctx.dims(_x(node, 2), node, "ends")
    axes_v, steps_v = node.input(3), node.input(4)
    axes = ctx.dims(axes_v, node, "axes") if axes_v is not None else tuple(range(len(starts)))
    steps = ctx.dims(steps_v, node, "steps") if steps_v is not None else (1,) * len(starts)
    norm_axes, norm_starts, norm_ends, norm_steps = [], [], [], []
    for axis, start, end, step in zip(axes, starts, ends, steps, strict=True):
        a = norm_axis("Slice", int(axis), x.type.rank)
        begin, stop = ops.normalize_slice(x.type.shape[a], start, end, int(step))
        (
            norm_axes.append(a),
            norm_starts.append(begin),
            norm_ends.append(stop),
            norm_steps.append(int(step)),
        )
    return ctx.emit(
        ops.Slice(tuple(norm_axes), tuple(norm_starts), tuple(norm_ends), tuple(norm_steps)), x
    )


def _gather(ctx: Context, node: OnnxNode) -> Value:
    return ctx.emit(ops.Gather(node.attr("axis", 0)), _x(node), _x(node, 1))


def _expand(ctx: Context, node: OnnxNode) -> Value:
    x = _x(node)
    shape = ctx.dims(_x(node, 1), node, "shape")
    return ctx.emit(ops.Expand(shape), x)


def _tile(ctx: Context, node: OnnxNode) -> Value:
    x = _x(node)
    repeats = ctx.dims(_x(node, 1), node, "repeats")
    if all(r == 1 for r in repeats):
        return x
    interleaved = [d for dim in x.type.shape for d in (1, dim)]
    wide = [d for r, dim in zip(repeats, x.type.shape, strict=True) for d in (r, dim)]
    expanded = ctx.emit(ops.Expand(tuple(wide)), reshape(ctx, x, interleaved))
    return reshape(ctx, expanded, [r * d for r, d in zip(repeats, x.type.shape, strict=True)])


def _shape(ctx: Context, node: OnnxNode) -> Value:
    dims = _x(node).type.shape
    rank = len(dims)
    start, end = (
        min(max(a + rank if a < 0 else a, 0), rank)
        for a in (node.attr("start", 0), node.attr("end", rank))
    )
    return ctx.known_dims(dims[start:end])


def _size(ctx: Context, node: OnnxNode) -> Value:
    return reshape(ctx, ctx.known_dims((_x(node).type.numel,)), ())


def _constant(ctx: Context, node: OnnxNode) -> Value:
    from onnx import numpy_helper

    if "value" in node.attrs:
        return ctx.const(numpy_helper.to_array(node.attrs["value"]))
    scalars = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
               "value_ints": np.int64}  # fmt: skip
    for name, dtype in scalars.items():
        if name in node.attrs:
            return ctx.const(np.array(node.attrs[name], dtype=dtype))
    raise node.unsupported(next(iter(node.attrs), "value"), "sparse or string constant")


def _constant_of_shape(ctx: Context, node: OnnxNode) -> Value:
    from onnx import numpy_helper

    shape = ctx.dims(_x(node), node, "input")
    tensor = node.attr("value")
    fill = (
        numpy_helper.to_array(tensor).reshape(-1) if tensor is not None else np.zeros(1, np.float32)
    )
    return ctx.emit(ops.Full(shape, fill[0].item(), DType.of(fill.dtype)))


def _range(ctx: Context, node: OnnxNode) -> Value:
    start, limit, delta = (ctx.dims(_x(node, i), node, name)[0] if _x(node, i).type.dtype.is_int
                           else ctx.static(_x(node, i), node, name).item()
                           for i, name in enumerate(("start", "limit", "delta")))  # fmt: skip
    dtype = _x(node).type.dtype
    return ctx.emit(ops.Arange(start, limit, delta, dtype))


def _identity(ctx: Context, node: OnnxNode) -> Value:
    return _x(node)


def _dropout(ctx: Context, node: OnnxNode) -> Sequence[Value]:
    x = _x(node)
    training = node.input(2)
    if training is not None and ctx.static(training, node, "training_mode").item():
        raise node.unsupported("training_mode", True)
    mask = ctx.emit(ops.Full(x.type.shape, True, DType.bool))
    return (x, mask)[: node.num_outputs]


def _depth_to_space(ctx: Context, node: OnnxNode) -> Value:
    x = _x(node)
    n, c, h, w = x.type.shape
    bs = node.attr("blocksize")
    if node.attr("mode", "DCR") == "DCR":
        split, perm = (n, bs, bs, c // (bs * bs), h, w), (0, 3, 4, 1, 5, 2)
    else:
        split, perm = (n, c // (bs * bs), bs, bs, h, w), (0, 1, 4, 2, 5, 3)
    moved = ctx.emit(ops.Transpose(perm), reshape(ctx, x, split))
    return reshape(ctx, moved, (n, c // (bs * bs), h * bs, w * bs))


def _space_to_depth(ctx: Context, node: OnnxNode) -> Value:
    x = _x(node)
    n, c, h, w = x.type.shape
    bs = node.attr("blocksize")
    split = reshape(ctx, x, (n, c, h // bs, bs, w // bs, bs))
    moved = ctx.emit(ops.Transpose((0, 3, 5, 1, 2, 4)), split)
    return reshape(ctx, moved, (n, c * bs * bs, h // bs, w // bs))


def _eye_like(ctx: Context, node: OnnxNode) -> Value:
    x = _x(node)
    rows, cols = x.type.shape
    if not (isinstance(rows, int) and isinstance(cols, int)):
        raise node.unsupported("input shape", str(x.type))
    dtype = (
        onnx_dtype(node.attr("dtype"), "EyeLike")
        if node.attr("dtype") is not None
        else x.type.dtype
    )
    return ctx.const(np.eye(rows, cols, k=node.attr("k", 0), dtype=dtype.numpy))


CONVERTERS: dict[str, Converter] = {
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Concat": _concat,
    "Split": _split,
    "Slice": _slice,
    "Gather": _gather,
    "Expand": _expand,
    "Tile": _tile,
    "Shape": _shape,
    "Size": _size,
    "Constant": _constant,
    "ConstantOfShape": _constant_of_shape,
    "Range": _range,
    "Identity": _identity,
    "Dropout": _dropout,
    "DepthToSpace": _depth_to_space,
    "SpaceToDepth": _space_to_depth,
    "EyeLike": _eye_like,
    "Transpose": lambda ctx, node: ctx.emit(
        ops.Transpose(tuple(node.attr("perm", range(_x(node).type.rank - 1, -1, -1)))), _x(node)
    ),
}
