"""Converters for elementwise ONNX ops: math, comparisons, logic, casts and activations."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from ember.frontend.onnx.context import Context, Converter, OnnxNode, onnx_dtype
from ember.ir import DType, Value, ops

__all__ = ["CONVERTERS"]

_UNARY = {
    "Abs": ops.Abs, "Neg": ops.Neg, "Sign": ops.Sign, "Exp": ops.Exp, "Log": ops.Log,
    "Sqrt": ops.Sqrt, "Reciprocal": ops.Reciprocal, "Sin": ops.Sin, "Cos": ops.Cos,
    "Tan": ops.Tan, "Asin": ops.Asin, "Acos": ops.Acos, "Atan": ops.Atan, "Sinh": ops.Sinh,
    "Cosh": ops.Cosh, "Tanh": ops.Tanh, "Asinh": ops.Asinh, "Acosh": ops.Acosh,
    "Atanh": ops.Atanh, "Erf": ops.Erf, "Sigmoid": ops.Sigmoid, "Floor": ops.Floor,
    "Ceil": ops.Ceil, "Round": ops.Round, "Relu": ops.Relu, "Softplus": ops.Softplus,
    "Softsign": ops.Softsign, "IsNaN": ops.IsNan, "Not": ops.LogicalNot,
    "BitwiseNot": ops.BitwiseNot,
}  # fmt: skip

_BINARY = {
    "Add": ops.Add, "Sub": ops.Sub, "Mul": ops.Mul, "Div": ops.Div, "Equal": ops.Equal,
    "Less": ops.Less, "LessOrEqual": ops.LessEqual, "Greater": ops.Greater,
    "GreaterOrEqual": ops.GreaterEqual, "And": ops.LogicalAnd, "Or": ops.LogicalOr,
    "Xor": ops.LogicalXor, "BitwiseAnd": ops.BitwiseAnd, "BitwiseOr": ops.BitwiseOr,
    "BitwiseXor": ops.BitwiseXor,
}  # fmt: skip

_VARIADIC = {"Max": ops.Maximum, "Min": ops.Minimum, "Sum": ops.Add}


def _x(node: OnnxNode) -> Value:
    x = node.input(0)
    if x is None:
        raise node.unsupported("input 0", None)
    return x


def _unary(op: type[ops.UnaryOp]) -> Converter:
    return lambda ctx, node: ctx.emit(op(), _x(node))


def _binary(op: type[ops.BinaryOp]) -> Converter:
    return lambda ctx, node: ctx.emit(op(), _x(node), node.inputs[1])  # type: ignore[arg-type]


def _variadic(op: type[ops.BinaryOp]) -> Converter:
    def convert(ctx: Context, node: OnnxNode) -> Value:
        values = [v for v in node.inputs if v is not None]
        return functools.reduce(lambda a, b: ctx.emit(op(), a, b), values)

    return convert


def _mean(ctx: Context, node: OnnxNode) -> Value:
    total = _variadic(ops.Add)(ctx, node)
    assert isinstance(total, Value)
    return ctx.emit(ops.Div(), total, ctx.scalar(len(node.inputs), total.type.dtype))


def _pow(ctx: Context, node: OnnxNode) -> Value:
    x, y = _x(node), node.inputs[1]
    assert y is not None
    if x.type.dtype.is_float or x.type.dtype == y.type.dtype:
        return ctx.emit(ops.Pow(), x, ctx.cast(y, x.type.dtype))
    wide = DType.float64
    out = ctx.emit(ops.Pow(), ctx.cast(x, wide), ctx.cast(y, wide))
    return ctx.cast(out, x.type.dtype)


def _mod(ctx: Context, node: OnnxNode) -> Value:
    op = ops.Fmod() if node.attr("fmod", 0) else ops.Mod()
    return ctx.emit(op, _x(node), node.inputs[1])  # type: ignore[arg-type]


def _bit_shift(ctx: Context, node: OnnxNode) -> Value:
    op = ops.LeftShift() if node.attr("direction") == "LEFT" else ops.RightShift()
    return ctx.emit(op, _x(node), node.inputs[1])  # type: ignore[arg-type]


def _cast(ctx: Context, node: OnnxNode) -> Value:
    dtype = onnx_dtype(node.attr("to"), f"Cast node {node.name!r}")
    return _cast_to(ctx, _x(node), dtype, bool(node.attr("saturate", 1)))


def _cast_like(ctx: Context, node: OnnxNode) -> Value:
    target = node.inputs[1]
    assert target is not None
    return _cast_to(ctx, _x(node), target.type.dtype, bool(node.attr("saturate", 1)))


_SATURATING = (DType.float8_e4m3fn, DType.float8_e5m2, DType.float8_e4m3fnuz,
               DType.float8_e5m2fnuz, DType.float4_e2m1fn)  # fmt: skip


def _saturate(ctx: Context, x: Value, dtype: DType) -> Value:
    """x clamped to dtype's finite range (infinities too); NaN stays NaN."""
    import ml_dtypes

    limit = float(ml_dtypes.finfo(dtype.numpy).max)
    high, low = ctx.scalar(limit, x.type.dtype), ctx.scalar(-limit, x.type.dtype)
    x = ctx.emit(ops.Where(), ctx.emit(ops.Greater(), x, high), high, x)
    return ctx.emit(ops.Where(), ctx.emit(ops.Less(), x, low), low, x)


def _cast_to(ctx: Context, x: Value, dtype: DType, saturate: bool = False) -> Value:
    if saturate and dtype in _SATURATING and x.type.dtype.is_float:
        x = _saturate(ctx, x, dtype)
    known = ctx.known.get(x)
    out = ctx.cast(x, dtype)
    if known is not None and dtype.is_int:
        ctx.known[out] = known
    return out


def _bitcast(ctx: Context, node: OnnxNode) -> Value:
    dtype = onnx_dtype(node.attr("to"), f"BitCast node {node.name!r}")
    return ctx.emit(ops.Bitcast(dtype), _x(node))


def _where(ctx: Context, node: OnnxNode) -> Value:
    return ctx.emit(ops.Where(), *node.inputs)  # type: ignore[arg-type]


def _clip(ctx: Context, node: OnnxNode) -> Value:
    x = _x(node)
    bounds = [node.input(1), node.input(2)]
    arrays = [ctx.array(b) if b is not None else None for b in bounds]
    if all(
        b is None or (a is not None and a.dtype != object)
        for b, a in zip(bounds, arrays, strict=True)
    ):
        lo, hi = (None if a is None else a.item() for a in arrays)
        return ctx.emit(ops.Clip(lo, hi), x)
    if bounds[0] is not None:
        x = ctx.emit(ops.Maximum(), x, bounds[0])
    if bounds[1] is not None:
        x = ctx.emit(ops.Minimum(), x, bounds[1])
    return x


def _is_inf(ctx: Context, node: OnnxNode) -> Value:
    x = _x(node)
    pos, neg = node.attr("detect_positive", 1), node.attr("detect_negative", 1)
    if pos and neg:
        return ctx.emit(ops.IsInf(), x)
    if not (pos or neg):
        return ctx.emit(ops.LogicalAnd(), ctx.emit(ops.IsInf(), x), ctx.const(np.array(False)))
    return ctx.emit(ops.Equal(), x, ctx.scalar(np.inf if pos else -np.inf, x.type.dtype))


def _activation(fn: Callable[[Context, Value, OnnxNode], Value]) -> Converter:
    return lambda ctx, node: fn(ctx, _x(node), node)


def _s(ctx: Context, x: Value, value: float) -> Value:
    return ctx.scalar(value, x.type.dtype)


def _elu(ctx: Context, x: Value, node: OnnxNode, alpha: float = 1.0, scale: float = 1.0) -> Value:
    neg = ctx.emit(
        ops.Mul(), _s(ctx, x, alpha), ctx.emit(ops.Sub(), ctx.emit(ops.Exp(), x), _s(ctx, x, 1))
    )
    out = ctx.emit(ops.Where(), ctx.emit(ops.Greater(), x, _s(ctx, x, 0)), x, neg)
    return out if scale == 1.0 else ctx.emit(ops.Mul(), out, _s(ctx, x, scale))


def _celu(ctx: Context, x: Value, node: OnnxNode) -> Value:
    alpha = node.attr("alpha", 1.0)
    scaled = ctx.emit(ops.Div(), x, _s(ctx, x, alpha))
    neg = ctx.emit(
        ops.Mul(),
        _s(ctx, x, alpha),
        ctx.emit(ops.Sub(), ctx.emit(ops.Exp(), scaled), _s(ctx, x, 1)),
    )
    return ctx.emit(ops.Add(), ctx.emit(ops.Relu(), x), ctx.emit(ops.Minimum(), _s(ctx, x, 0), neg))


def _leaky(ctx: Context, x: Value, slope: Value) -> Value:
    scaled = ctx.emit(ops.Mul(), x, slope)
    return ctx.emit(ops.Where(), ctx.emit(ops.Less(), x, _s(ctx, x, 0)), scaled, x)


def _hard_sigmoid(ctx: Context, x: Value, alpha: float, beta: float) -> Value:
    lin = ctx.emit(ops.Add(), ctx.emit(ops.Mul(), x, _s(ctx, x, alpha)), _s(ctx, x, beta))
    return ctx.emit(ops.Clip(0.0, 1.0), lin)


def _shrink(ctx: Context, x: Value, node: OnnxNode) -> Value:
    bias, lambd = node.attr("bias", 0.0), node.attr("lambd", 0.5)
    low = ctx.emit(ops.Less(), x, _s(ctx, x, -lambd))
    high = ctx.emit(ops.Greater(), x, _s(ctx, x, lambd))
    zero = _s(ctx, x, 0)
    out = ctx.emit(ops.Where(), high, ctx.emit(ops.Sub(), x, _s(ctx, x, bias)), zero)
    return ctx.emit(ops.Where(), low, ctx.emit(ops.Add(), x, _s(ctx, x, bias)), out)


def _mish(ctx: Context, x: Value, node: OnnxNode) -> Value:
    return ctx.emit(ops.Mul(), x, ctx.emit(ops.Tanh(), ctx.emit(ops.Softplus(), x)))


def _swish(ctx: Context, x: Value, node: OnnxNode) -> Value:
    alpha = node.attr("alpha", 1.0)
    return ctx.emit(
        ops.Mul(), x, ctx.emit(ops.Sigmoid(), ctx.emit(ops.Mul(), x, _s(ctx, x, alpha)))
    )


def _thresholded(ctx: Context, x: Value, node: OnnxNode) -> Value:
    keep = ctx.emit(ops.Greater(), x, _s(ctx, x, node.attr("alpha", 1.0)))
    return ctx.emit(ops.Where(), keep, x, _s(ctx, x, 0))


def _gelu(ctx: Context, x: Value, node: OnnxNode) -> Value:
    return ctx.emit(ops.Gelu(node.attr("approximate", "none")), x)


def _hard_swish(ctx: Context, x: Value, node: OnnxNode) -> Value:
    return ctx.emit(ops.Mul(), x, _hard_sigmoid(ctx, x, 1 / 6, 0.5))


CONVERTERS: dict[str, Converter] = {
    **{name: _unary(op) for name, op in _UNARY.items()},
    **{name: _binary(op) for name, op in _BINARY.items()},
    **{name: _variadic(op) for name, op in _VARIADIC.items()},
    "Mean": _mean,
    "Pow": _pow,
    "Mod": _mod,
    "BitShift": _bit_shift,
    "Cast": _cast,
    "CastLike": _cast_like,
    "BitCast": _bitcast,
    "Where": _where,
    "Clip": _clip,
    "IsInf": _is_inf,
    "Elu": _activation(lambda ctx, x, n: _elu(ctx, x, n, n.attr("alpha", 1.0))),
    "Selu": _activation(
        lambda ctx, x, n: _elu(
            ctx,
            x,
            n,
            n.attr("alpha", 1.67326319217681884765625),
            n.attr("gamma", 1.05070102214813232421875),
        )
    ),
    "Celu": _activation(_celu),
    "LeakyRelu": _activation(lambda ctx, x, n: _leaky(ctx, x, _s(ctx, x, n.attr("alpha", 0.01)))),
    "PRelu": lambda ctx, node: _leaky(ctx, _x(node), node.inputs[1]),  # type: ignore[arg-type]
    "HardSigmoid": _activation(
        lambda ctx, x, n: _hard_sigmoid(ctx, x, n.attr("alpha", 0.2), n.attr("beta", 0.5))
    ),
    "HardSwish": _activation(_hard_swish),
    "Shrink": _activation(_shrink),
    "Mish": _activation(_mish),
    "Swish": _activation(_swish),
    "ThresholdedRelu": _activation(_thresholded),
    "Gelu": _activation(_gelu),
}
