"""Converters for elementwise aten ops: unary math, binary arithmetic and comparisons with
torch's type promotion made explicit, where/clamp/masked_fill, and dtype casts."""

from __future__ import annotations

from typing import Any

import torch

from ember.errors import UnsupportedError
from ember.frontend.torch.context import Context, Scalar
from ember.frontend.torch.registry import converter
from ember.ir import DType, Value
from ember.ir.ops import (
    BINARY_OPS,
    UNARY_OPS,
    Cast,
    Clip,
    FloorDiv,
    Gelu,
    Maximum,
    Minimum,
    Where,
)

aten = torch.ops.aten

_UNARY = {
    aten.neg: "neg", aten.abs: "abs", aten.sign: "sign", aten.exp: "exp", aten.log: "log",
    aten.sqrt: "sqrt", aten.rsqrt: "rsqrt", aten.reciprocal: "reciprocal", aten.sin: "sin",
    aten.cos: "cos", aten.tan: "tan", aten.asin: "asin", aten.acos: "acos", aten.atan: "atan",
    aten.sinh: "sinh", aten.cosh: "cosh", aten.tanh: "tanh", aten.asinh: "asinh",
    aten.acosh: "acosh", aten.atanh: "atanh", aten.erf: "erf", aten.sigmoid: "sigmoid",
    aten.floor: "floor", aten.ceil: "ceil", aten.round: "round", aten.relu: "relu",
    aten.silu: "silu", aten.log1p: "log1p", aten.isnan: "is_nan", aten.isinf: "is_inf",
    aten.logical_not: "logical_not", aten.bitwise_not: "bitwise_not",
}  # fmt: skip


def _unary(name: str) -> Any:
    op_cls = UNARY_OPS[name]

    def convert(cx: Context, x: Value) -> Value:
        dtype = cx.out_dtype()
        operand = x if dtype is DType.bool else cx.cast(x, dtype)
        return cx.emit(op_cls(), operand)

    return convert


for _target, _name in _UNARY.items():
    converter(_target)(_unary(_name))

_BINARY = {
    aten.mul: "mul", aten.maximum: "maximum", aten.minimum: "minimum", aten.atan2: "atan2",
    aten.remainder: "mod", aten.fmod: "fmod", aten.bitwise_and: "bitwise_and",
    aten.bitwise_or: "bitwise_or", aten.bitwise_xor: "bitwise_xor",
    aten.logical_and: "logical_and", aten.logical_or: "logical_or",
    aten.logical_xor: "logical_xor", aten.eq: "equal", aten.ne: "not_equal", aten.lt: "less",
    aten.le: "less_equal", aten.gt: "greater", aten.ge: "greater_equal",
    aten.floor_divide: "floor_div",
}  # fmt: skip


def binary(cx: Context, name: str, x: Value | Scalar, y: Value | Scalar) -> Value:
    """`name`(x, y) after promoting both to torch's result type (scalars become 0-d consts)."""
    op_cls = BINARY_OPS[name]
    dtype = cx.promote(x, y)
    if op_cls.kind == "bool":
        dtype = DType.bool
    elif op_cls.kind == "float" and not dtype.is_float:
        dtype = DType.float32
    return cx.emit(op_cls(), cx.tensor(x, dtype), cx.tensor(y, dtype))


def _binary(name: str) -> Any:
    def convert(cx: Context, x: Value | Scalar, y: Value | Scalar) -> Value:
        return cx.cast(binary(cx, name, x, y), cx.out_dtype())

    return convert


for _target, _name in _BINARY.items():
    converter(_target)(_binary(_name))


@converter(aten.add, aten.sub)
def _add_sub(cx: Context, x: Value | Scalar, y: Value | Scalar, alpha: Scalar = 1) -> Value:
    if alpha != 1:
        y = binary(cx, "mul", y, alpha)
    name = "add" if cx.node.target.overloadpacket is aten.add else "sub"
    return cx.cast(binary(cx, name, x, y), cx.out_dtype())


@converter(aten.rsub)
def _rsub(cx: Context, x: Value | Scalar, y: Value | Scalar, alpha: Scalar = 1) -> Value:
    if alpha != 1:
        x = binary(cx, "mul", x, alpha)
    return cx.cast(binary(cx, "sub", y, x), cx.out_dtype())


@converter(aten.div)
def _div(
    cx: Context, x: Value | Scalar, y: Value | Scalar, rounding_mode: str | None = None
) -> Value:
    dtype = cx.out_dtype()
    a, b = cx.tensor(x, dtype), cx.tensor(y, dtype)
    if rounding_mode is None or (not dtype.is_float and rounding_mode == "trunc"):
        return cx.emit(BINARY_OPS["div"](), a, b)
    if rounding_mode == "floor":
        return cx.emit(FloorDiv(), a, b)
    q = cx.emit(BINARY_OPS["div"](), a, b)
    negative = cx.emit(BINARY_OPS["less"](), q, cx.const(0, dtype))
    return cx.emit(
        Where(), negative, cx.emit(UNARY_OPS["ceil"](), q), cx.emit(UNARY_OPS["floor"](), q)
    )


@converter(aten.pow)
def _pow(cx: Context, x: Value | Scalar, y: Value | Scalar) -> Value:
    dtype = cx.out_dtype()
    if isinstance(y, int | float) and y == 2 and isinstance(x, Value):
        base = cx.cast(x, dtype)
        return cx.emit(BINARY_OPS["mul"](), base, base)
    return cx.emit(BINARY_OPS["pow"](), cx.tensor(x, dtype), cx.tensor(y, dtype))


@converter(aten.where.self, aten.where.ScalarSelf, aten.where.ScalarOther, aten.where.Scalar)
def _where(cx: Context, cond: Value, x: Value | Scalar, y: Value | Scalar) -> Value:
    dtype = cx.out_dtype()
    return cx.emit(Where(), cx.cast(cond, DType.bool), cx.tensor(x, dtype), cx.tensor(y, dtype))


@converter(aten.masked_fill.Scalar, aten.masked_fill.Tensor)
def _masked_fill(cx: Context, x: Value, mask: Value, value: Value | Scalar) -> Value:
    return cx.emit(Where(), mask, cx.tensor(value, x.type.dtype), x)


@converter(aten.clamp.default, aten.clamp_min.default, aten.clamp_max.default)
def _clamp(cx: Context, x: Value, lo: Scalar | None = None, hi: Scalar | None = None) -> Value:
    if cx.node.target is aten.clamp_max.default:
        lo, hi = None, lo
    dtype = cx.out_dtype()
    x = cx.cast(x, dtype)
    if all(isinstance(v, int | float | None) for v in (lo, hi)):
        return cx.emit(Clip(min=lo, max=hi), x)
    raise UnsupportedError("symbolic clamp bounds")


@converter(aten.clamp.Tensor, aten.clamp_min.Tensor, aten.clamp_max.Tensor)
def _clamp_tensor(cx: Context, x: Value, lo: Value | None = None, hi: Value | None = None) -> Value:
    if cx.node.target is aten.clamp_max.Tensor:
        lo, hi = None, lo
    dtype = cx.out_dtype()
    out = cx.cast(x, dtype)
    if lo is not None:
        out = cx.emit(Maximum(), out, cx.cast(lo, dtype))
    if hi is not None:
        out = cx.emit(Minimum(), out, cx.cast(hi, dtype))
    return out


@converter(aten.gelu.default)
def _gelu(cx: Context, x: Value, approximate: str = "none") -> Value:
    return cx.emit(Gelu(approximate), x)


@converter(aten._to_copy.default, aten.to.dtype, aten.to.dtype_layout, aten.type_as.default)
def _to_copy(cx: Context, x: Value, *_: Any, **__: Any) -> Value:
    return cx.cast(x, cx.out_dtype())


@converter(aten.expm1.default)
def _expm1(cx: Context, x: Value) -> Value:
    e = cx.emit(UNARY_OPS["exp"](), cx.cast(x, cx.out_dtype()))
    return cx.emit(BINARY_OPS["sub"](), e, cx.const(1, e.type.dtype))


@converter(aten.trunc.default)
def _trunc(cx: Context, x: Value) -> Value:
    if not x.type.dtype.is_float:
        return x
    return cx.emit(Cast(x.type.dtype), cx.emit(Cast(DType.int64), x))
