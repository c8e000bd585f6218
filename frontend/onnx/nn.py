"""Converters for ONNX neural-network ops: softmax family, MatMul/Gemm and normalizations."""

from __future__ import annotations

from collections.abc import Sequence

from ember.frontend.onnx.context import Context, Converter, OnnxNode, onnx_dtype
from ember.frontend.onnx.reduce import reduce
from ember.frontend.onnx.shape import reshape
from ember.ir import DType, Value, ops
from ember.ir.ops._shapes import norm_axis

__all__ = ["CONVERTERS", "matmul"]


def matmul(ctx: Context, x: Value, y: Value) -> Value:
    """numpy matmul: 1-D operands are lifted to matrices and the added axis dropped."""
    lx = reshape(ctx, x, (1, *x.type.shape)) if x.type.rank == 1 else x
    ly = reshape(ctx, y, (*y.type.shape, 1)) if y.type.rank == 1 else y
    out = ctx.emit(ops.MatMul(), lx, ly)
    shape = list(out.type.shape)
    if y.type.rank == 1:
        shape.pop(-1)
    if x.type.rank == 1:
        shape.pop(-1 if y.type.rank == 1 else -2)
    return reshape(ctx, out, shape)


def _softmax(op: type[ops.Softmax] | type[ops.LogSoftmax]) -> Converter:
    return lambda ctx, node: ctx.emit(op(node.attr("axis", -1)), node.required(0))


def _hardmax(ctx: Context, node: OnnxNode) -> Value:
    x = node.required(0)
    axis = norm_axis("Hardmax", node.attr("axis", -1), x.type.rank)
    depth = x.type.shape[axis]
    if not isinstance(depth, int):
        raise node.unsupported("axis", f"{axis} (symbolic size {depth})")
    index = ctx.emit(ops.ArgMax(axis, False), x)
    return ctx.emit(ops.OneHot(depth, axis, 1, 0, x.type.dtype), index)


def _gemm(ctx: Context, node: OnnxNode) -> Value:
    a, b = node.required(0), node.required(1)
    if node.attr("transA", 0):
        a = ctx.emit(ops.Transpose((1, 0)), a)
    if node.attr("transB", 0):
        b = ctx.emit(ops.Transpose((1, 0)), b)
    out = ctx.emit(ops.MatMul(), a, b)
    alpha, beta = node.attr("alpha", 1.0), node.attr("beta", 1.0)
    if alpha != 1.0:
        out = ctx.emit(ops.Mul(), out, ctx.scalar(alpha, out.type.dtype))
    c = node.input(2)
    if c is not None:
        if beta != 1.0:
            c = ctx.emit(ops.Mul(), c, ctx.scalar(beta, c.type.dtype))
        out = ctx.emit(ops.Add(), out, c)
    return out


def normalize(
    ctx: Context, x: Value, axes: Sequence[int], eps: float
) -> tuple[Value, Value, Value]:
    """(x - mean) / sqrt(var + eps) over `axes`; also returns mean and 1 / sqrt(var + eps)."""
    mean = reduce(ctx, ops.ReduceMean, x, tuple(axes), True)
    centered = ctx.emit(ops.Sub(), x, mean)
    var = reduce(ctx, ops.ReduceMean, ctx.emit(ops.Mul(), centered, centered), tuple(axes), True)
    inv_std = ctx.emit(ops.Rsqrt(), ctx.emit(ops.Add(), var, ctx.scalar(eps, x.type.dtype)))
    return ctx.emit(ops.Mul(), centered, inv_std), mean, inv_std


def _affine(ctx: Context, x: Value, scale: Value | None, bias: Value | None) -> Value:
    if scale is not None:
        x = ctx.emit(ops.Mul(), x, ctx.cast(scale, x.type.dtype))
    if bias is not None:
        x = ctx.emit(ops.Add(), x, ctx.cast(bias, x.type.dtype))
    return x


def _stash(node: OnnxNode, x: Value) -> DType:
    stash = node.attr("stash_type", 1)
    return onnx_dtype(stash, node.op_type) if x.type.dtype.is_float else x.type.dtype


def _layer_norm(ctx: Context, node: OnnxNode) -> Sequence[Value]:
    x, scale, bias = node.required(0), node.input(1), node.input(2)
    axis = norm_axis("LayerNormalization", node.attr("axis", -1), x.type.rank)
    eps = node.attr("epsilon", 1e-5)
    axes = range(axis, x.type.rank)
    stash = _stash(node, x)
    normalized, mean, inv_std = normalize(ctx, ctx.cast(x, stash), axes, eps)
    out = _affine(ctx, ctx.cast(normalized, x.type.dtype), scale, bias)
    return (out, mean, inv_std)[: node.num_outputs]


def _rms_norm(ctx: Context, node: OnnxNode) -> Value:
    x, scale = node.required(0), node.input(1)
    axis = norm_axis("RMSNormalization", node.attr("axis", -1), x.type.rank)
    wide = ctx.cast(x, _stash(node, x))
    square = reduce(
        ctx, ops.ReduceMean, ctx.emit(ops.Mul(), wide, wide), tuple(range(axis, x.type.rank)), True
    )
    eps = ctx.scalar(node.attr("epsilon", 1e-5), wide.type.dtype)
    normalized = ctx.emit(ops.Mul(), wide, ctx.emit(ops.Rsqrt(), ctx.emit(ops.Add(), square, eps)))
    return _affine(ctx, ctx.cast(normalized, x.type.dtype), scale, None)


def _channel(ctx: Context, v: Value | None, rank: int) -> Value | None:
    """A per-channel [C] vector reshaped to broadcast over [N, C, *spatial]."""
    if v is None:
        return None
    return reshape(ctx, v, (v.type.shape[0], *([1] * (rank - 2))))


def _batch_norm(ctx: Context, node: OnnxNode) -> Value:
    if node.attr("training_mode", 0):
        raise node.unsupported("training_mode", 1)
    x = node.required(0)
    scale, bias, mean, var = (_channel(ctx, node.required(i), x.type.rank) for i in range(1, 5))
    if mean is None or var is None:
        raise node.unsupported("inputs", "mean and var are required")
    eps = ctx.scalar(node.attr("epsilon", 1e-5), var.type.dtype)
    inv_std = ctx.emit(ops.Rsqrt(), ctx.emit(ops.Add(), var, eps))
    centered = ctx.emit(ops.Sub(), x, ctx.cast(mean, x.type.dtype))
    return _affine(ctx, ctx.emit(ops.Mul(), centered, ctx.cast(inv_std, x.type.dtype)), scale, bias)


def _instance_norm(ctx: Context, node: OnnxNode) -> Value:
    x = node.required(0)
    rank = x.type.rank
    normalized, _, _ = normalize(ctx, x, range(2, rank), node.attr("epsilon", 1e-5))
    return _affine(
        ctx, normalized, _channel(ctx, node.input(1), rank), _channel(ctx, node.input(2), rank)
    )


def _group_norm(ctx: Context, node: OnnxNode) -> Value:
    x = node.required(0)
    n = x.type.shape[0]
    groups = node.attr("num_groups")
    grouped = reshape(ctx, x, (n, groups, -1))
    wide = ctx.cast(grouped, _stash(node, x))
    normalized, _, _ = normalize(ctx, wide, (2,), node.attr("epsilon", 1e-5))
    out = reshape(ctx, ctx.cast(normalized, x.type.dtype), x.type.shape)
    rank = x.type.rank
    return _affine(ctx, out, _channel(ctx, node.input(1), rank), _channel(ctx, node.input(2), rank))


def _mvn(ctx: Context, node: OnnxNode) -> Value:
    x = node.required(0)
    axes = tuple(node.attr("axes", (0, 2, 3)))
    mean = reduce(ctx, ops.ReduceMean, x, axes, True)
    centered = ctx.emit(ops.Sub(), x, mean)
    var = reduce(ctx, ops.ReduceMean, ctx.emit(ops.Mul(), centered, centered), axes, True)
    std = ctx.emit(ops.Sqrt(), var)
    return ctx.emit(ops.Div(), centered, ctx.emit(ops.Add(), std, ctx.scalar(1e-9, x.type.dtype)))


def _lp_norm(ctx: Context, node: OnnxNode) -> Value:
    x = node.required(0)
    axis, p = node.attr("axis", -1), node.attr("p", 2)
    if p == 1:
        norm = reduce(ctx, ops.ReduceSum, ctx.emit(ops.Abs(), x), (axis,), True)
    else:
        norm = ctx.emit(
            ops.Sqrt(), reduce(ctx, ops.ReduceSum, ctx.emit(ops.Mul(), x, x), (axis,), True)
        )
    zero = ctx.emit(ops.Equal(), norm, ctx.scalar(0, x.type.dtype))
    safe = ctx.emit(ops.Where(), zero, ctx.scalar(1, x.type.dtype), norm)
    return ctx.emit(ops.Div(), x, safe)


def _einsum(ctx: Context, node: OnnxNode) -> Value:
    equation = node.attr("equation").replace(" ", "")
    operands = [v for v in node.inputs if v is not None]
    return ctx.emit(ops.Einsum(equation), *operands)


CONVERTERS: dict[str, Converter] = {
    "Softmax": _softmax(ops.Softmax),
    "LogSoftmax": _softmax(ops.LogSoftmax),
    "Hardmax": _hardmax,
    "MatMul": lambda ctx, node: matmul(ctx, node.required(0), node.required(1)),
    "Gemm": _gemm,
    "LayerNormalization": _layer_norm,
    "RMSNormalization": _rms_norm,
    "BatchNormalization": _batch_norm,
    "InstanceNormalization": _instance_norm,
    "GroupNormalization": _group_norm,
    "MeanVarianceNormalization": _mvn,
    "LpNormalization": _lp_norm,
    "Einsum": _einsum,
}
