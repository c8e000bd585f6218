"""Elementwise ops, built from tables: unary math, broadcasting binary ops, comparisons; plus
`cast`, `where`, `clip` and the parameterized activations."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, make_dataclass
from typing import Any, ClassVar

import numpy as np

from ember.ir.op import Op, register_op
from ember.ir.ops._shapes import broadcast_shapes, is_unit
from ember.ir.types import DType, TensorType

_erf = np.frompyfunc(math.erf, 1, 1)


def _np_erf(x: np.ndarray) -> np.ndarray:
    return _erf(x.astype(np.float64)).astype(np.float64)


def _topi(name: str) -> Callable[..., Any]:
    def compute(*xs: Any) -> Any:
        from tvm import topi

        fn = topi
        for part in name.split("."):
            fn = getattr(fn, part)
        return fn(*xs)

    return compute


def _te_expr(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A unary TE compute from a scalar expression builder `fn(value, tirx, dtype)`."""

    def compute(x: Any) -> Any:
        from tvm import te, tirx

        return te.compute(x.shape, lambda *i: fn(x(*i), tirx, str(x.dtype)), name="out")

    return compute


@dataclass(frozen=True)
class UnaryOp(Op):
    """y = f(x) elementwise; `float_only` ops reject integer inputs."""

    float_only: ClassVar[bool] = True
    np_fn: ClassVar[Callable[[np.ndarray], np.ndarray]]
    te_fn: ClassVar[Callable[[Any], Any]]

    def infer(self, x: TensorType) -> TensorType:
        if self.float_only and not x.dtype.is_float:
            raise self.error(f"input must be floating point, got {x}")
        return x

    def reference(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):  # log(0) = -inf, sqrt(-1) = nan: IEEE results, not errors
            if x.dtype.itemsize < 4 and self.float_only:  # f16/bf16: compute in f32 like torch
                return type(self).np_fn(x.astype(np.float32)).astype(x.dtype)
            return np.asarray(type(self).np_fn(x)).astype(x.dtype)

    def compute(self, x: Any) -> Any:
        return type(self).te_fn(x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# name: (numpy reference, TE compute, float_only)
_UNARY: dict[str, tuple[Callable[..., Any], Callable[..., Any], bool]] = {
    "neg": (np.negative, _topi("negative"), False),
    "abs": (np.abs, _topi("abs"), False),
    "sign": (np.sign, _topi("sign"), False),
    "exp": (np.exp, _topi("exp"), True),
    "log": (np.log, _topi("log"), True),
    "sqrt": (np.sqrt, _topi("sqrt"), True),
    "rsqrt": (lambda x: 1.0 / np.sqrt(x), _topi("rsqrt"), True),
    "reciprocal": (lambda x: 1.0 / x, _te_expr(lambda v, t, d: t.const(1, d) / v), True),
    "sin": (np.sin, _topi("sin"), True),
    "cos": (np.cos, _topi("cos"), True),
    "tan": (np.tan, _topi("tan"), True),
    "asin": (np.arcsin, _topi("asin"), True),
    "acos": (np.arccos, _topi("acos"), True),
    "atan": (np.arctan, _topi("atan"), True),
    "sinh": (np.sinh, _topi("sinh"), True),
    "cosh": (np.cosh, _topi("cosh"), True),
    "tanh": (np.tanh, _topi("tanh"), True),
    "asinh": (np.arcsinh, _topi("asinh"), True),
    "acosh": (np.arccosh, _topi("acosh"), True),
    "atanh": (np.arctanh, _topi("atanh"), True),
    "erf": (_np_erf, _topi("erf"), True),
    "sigmoid": (_sigmoid, _topi("sigmoid"), True),
    "floor": (np.floor, _topi("floor"), True),
    "ceil": (np.ceil, _topi("ceil"), True),
    "round": (np.round, _te_expr(lambda v, t, d: t.nearbyint(v)), True),
    "relu": (lambda x: np.maximum(x, 0), _te_expr(lambda v, t, d: t.max(v, t.const(0, d))), False),
    "silu": (lambda x: x * _sigmoid(x), _te_expr(lambda v, t, d: v * t.sigmoid(v)), True),
    "softplus": (
        lambda x: np.logaddexp(0, x),
        _te_expr(lambda v, t, d: t.log(t.const(1, d) + t.exp(v))),
        True,
    ),
    "softsign": (
        lambda x: x / (1 + np.abs(x)),
        _te_expr(lambda v, t, d: v / (t.const(1, d) + t.abs(v))),
        True,
    ),
    "log1p": (np.log1p, _te_expr(lambda v, t, d: t.log(t.const(1, d) + v)), True),
    "is_nan": (np.isnan, _topi("isnan"), True),
    "is_inf": (np.isinf, _topi("isinf"), True),
    "logical_not": (np.logical_not, _topi("logical_not"), False),
    "bitwise_not": (np.invert, _topi("bitwise_not"), False),
}

_PREDICATES = {"is_nan", "is_inf"}


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _make_unary(
    name: str, np_fn: Callable[..., Any], te_fn: Callable[..., Any], float_only: bool
) -> type[Op]:
    body: dict[str, Any] = {
        "name": name,
        "np_fn": staticmethod(np_fn),
        "te_fn": staticmethod(te_fn),
        "float_only": float_only,
        "__doc__": f"{name}(x), elementwise.",
    }
    if name in _PREDICATES:
        body["infer"] = lambda self, x: UnaryOp.infer(self, x).with_dtype(DType.bool)
        body["reference"] = lambda self, x: np.asarray(type(self).np_fn(x))
    return register_op(
        make_dataclass(_camel(name), [], bases=(UnaryOp,), frozen=True, namespace=body)
    )


UNARY_OPS: dict[str, type[Op]] = {n: _make_unary(n, *spec) for n, spec in _UNARY.items()}
globals().update({cls.__name__: cls for cls in UNARY_OPS.values()})


@dataclass(frozen=True)
class BinaryOp(Op):
    """z = f(x, y) with numpy broadcasting; both inputs share one dtype (frontends promote)."""

    kind: ClassVar[str] = "any"  # "any", "float", "int", "bool"
    compare: ClassVar[bool] = False
    np_fn: ClassVar[Callable[[np.ndarray, np.ndarray], np.ndarray]]
    te_fn: ClassVar[Callable[[Any, Any], Any]]

    def infer(self, x: TensorType, y: TensorType) -> TensorType:
        if x.dtype != y.dtype:
            raise self.error(f"dtypes differ: {x} and {y}; insert a cast")
        if self.kind == "int" and not (x.dtype.is_int or x.dtype is DType.bool):
            raise self.error(f"inputs must be integers, got {x}")
        if self.kind == "bool" and x.dtype is not DType.bool:
            raise self.error(f"inputs must be bool, got {x}")
        shape = broadcast_shapes(self.name, x.shape, y.shape)
        return TensorType(shape, DType.bool if self.compare else x.dtype)

    def reference(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            out = np.asarray(type(self).np_fn(x, y))
        return out if self.compare else out.astype(x.dtype)

    def compute(self, x: Any, y: Any) -> Any:
        return type(self).te_fn(x, y)


def _trunc_div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if np.issubdtype(x.dtype, np.integer):
        safe = np.where(y == 0, 1, y)
        q = np.abs(x) // np.abs(safe)
        return (q * np.sign(x) * np.sign(safe)).astype(x.dtype)
    return x / y


def _fmod(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if np.issubdtype(x.dtype, np.integer):
        return x - _trunc_div(x, y) * y
    return np.fmod(x, y)


def _te_binary(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A broadcasting binary TE compute from a scalar expression builder `fn(a, b, tirx, dtype)`."""

    def compute(x: Any, y: Any) -> Any:
        from tvm import tirx

        return _broadcast_compute(x, y, lambda a, b: fn(a, b, tirx, str(x.dtype)))

    return compute


def _broadcast_compute(x: Any, y: Any, scalar: Callable[[Any, Any], Any]) -> Any:
    from tvm import te

    rank = max(len(x.shape), len(y.shape))
    shape = []
    for axis in range(rank):
        dx = x.shape[axis - rank + len(x.shape)] if axis >= rank - len(x.shape) else 1
        dy = y.shape[axis - rank + len(y.shape)] if axis >= rank - len(y.shape) else 1
        shape.append(dy if is_unit(dx) else dx)

    def index(t: Any, idx: tuple[Any, ...]) -> Any:
        own = idx[rank - len(t.shape) :]
        return t(*(0 if is_unit(d) else i for d, i in zip(t.shape, own, strict=True)))

    return te.compute(shape, lambda *i: scalar(index(x, i), index(y, i)), name="out")


# name: (numpy reference, TE compute, kind, compare)
_BINARY: dict[str, tuple[Callable[..., Any], Callable[..., Any], str, bool]] = {
    "add": (np.add, _topi("add"), "any", False),
    "sub": (np.subtract, _topi("subtract"), "any", False),
    "mul": (np.multiply, _topi("multiply"), "any", False),
    "div": (
        _trunc_div,
        _te_binary(lambda a, b, t, d: t.truncdiv(a, b) if "int" in d else a / b),
        "any",
        False,
    ),
    "floor_div": (np.floor_divide, _topi("floor_divide"), "any", False),
    "mod": (np.mod, _topi("floor_mod"), "any", False),
    "fmod": (
        _fmod,
        _te_binary(lambda a, b, t, d: t.truncmod(a, b) if "int" in d else a - t.trunc(a / b) * b),
        "any",
        False,
    ),
    "pow": (np.power, _topi("power"), "any", False),
    "maximum": (np.maximum, _topi("maximum"), "any", False),
    "minimum": (np.minimum, _topi("minimum"), "any", False),
    "atan2": (np.arctan2, _te_binary(lambda a, b, t, d: t.atan2(a, b)), "float", False),
    "bitwise_and": (np.bitwise_and, _topi("bitwise_and"), "int", False),
    "bitwise_or": (np.bitwise_or, _topi("bitwise_or"), "int", False),
    "bitwise_xor": (np.bitwise_xor, _topi("bitwise_xor"), "int", False),
    "left_shift": (np.left_shift, _topi("left_shift"), "int", False),
    "right_shift": (np.right_shift, _topi("right_shift"), "int", False),
    "logical_and": (np.logical_and, _topi("logical_and"), "bool", False),
    "logical_or": (np.logical_or, _topi("logical_or"), "bool", False),
    "logical_xor": (np.logical_xor, _topi("logical_xor"), "bool", False),
    "equal": (np.equal, _topi("equal"), "any", True),
    "not_equal": (np.not_equal, _topi("not_equal"), "any", True),
    "less": (np.less, _topi("less"), "any", True),
    "less_equal": (np.less_equal, _topi("less_equal"), "any", True),
    "greater": (np.greater, _topi("greater"), "any", True),
    "greater_equal": (np.greater_equal, _topi("greater_equal"), "any", True),
}


def _make_binary(
    name: str, np_fn: Callable[..., Any], te_fn: Callable[..., Any], kind: str, compare: bool
) -> type[Op]:
    body = {
        "name": name,
        "np_fn": staticmethod(np_fn),
        "te_fn": staticmethod(te_fn),
        "kind": kind,
        "compare": compare,
        "__doc__": f"{name}(x, y), elementwise with broadcasting.",
    }
    return register_op(
        make_dataclass(_camel(name), [], bases=(BinaryOp,), frozen=True, namespace=body)
    )


BINARY_OPS: dict[str, type[Op]] = {n: _make_binary(n, *spec) for n, spec in _BINARY.items()}
globals().update({cls.__name__: cls for cls in BINARY_OPS.values()})


@register_op
@dataclass(frozen=True)
class Cast(Op):
    """x converted to `dtype` (float -> int truncates toward zero; to bool is x != 0)."""

    name: ClassVar[str] = "cast"
    dtype: DType = DType.float32

    def infer(self, x: TensorType) -> TensorType:
        return x.with_dtype(self.dtype)

    def reference(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return x.astype(self.dtype.numpy)

    def compute(self, x: Any) -> Any:
        from tvm import te, tirx

        if self.dtype is DType.bool:
            return te.compute(x.shape, lambda *i: x(*i) != tirx.const(0, x.dtype), name="out")
        return te.compute(x.shape, lambda *i: x(*i).astype(self.dtype.tvm), name="out")


@register_op
@dataclass(frozen=True)
class Where(Op):
    """where(cond, x, y): x where cond is true, else y; broadcasting."""

    name: ClassVar[str] = "where"

    def infer(self, cond: TensorType, x: TensorType, y: TensorType) -> TensorType:
        if cond.dtype is not DType.bool:
            raise self.error(f"condition must be bool, got {cond}")
        if x.dtype != y.dtype:
            raise self.error(f"branches differ in dtype: {x} and {y}; insert a cast")
        return TensorType(broadcast_shapes(self.name, cond.shape, x.shape, y.shape), x.dtype)

    def reference(self, cond: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.where(cond, x, y).astype(x.dtype)

    def compute(self, cond: Any, x: Any, y: Any) -> Any:
        from tvm import topi

        return topi.where(cond, x, y)


@register_op
@dataclass(frozen=True)
class Clip(Op):
    """clip(x, min, max) with constant bounds; None leaves that side open."""

    name: ClassVar[str] = "clip"
    min: float | None = None
    max: float | None = None

    def infer(self, x: TensorType) -> TensorType:
        return x

    def reference(self, x: np.ndarray) -> np.ndarray:
        lo = -np.inf if self.min is None else self.min
        hi = np.inf if self.max is None else self.max
        return np.minimum(np.maximum(x, lo), hi).astype(x.dtype)

    def compute(self, x: Any) -> Any:
        from tvm import te, tirx

        def clip(v: Any) -> Any:
            if self.min is not None:
                v = tirx.max(v, tirx.const(self.min, x.dtype))
            if self.max is not None:
                v = tirx.min(v, tirx.const(self.max, x.dtype))
            return v

        return te.compute(x.shape, lambda *i: clip(x(*i)), name="out")


@register_op
@dataclass(frozen=True)
class Gelu(Op):
    """gelu(x) = x * Phi(x); approximate="tanh" uses the tanh formula."""

    name: ClassVar[str] = "gelu"
    approximate: str = "none"

    def infer(self, x: TensorType) -> TensorType:
        if not x.dtype.is_float:
            raise self.error(f"input must be floating point, got {x}")
        if self.approximate not in ("none", "tanh"):
            raise self.error(f"approximate must be 'none' or 'tanh', got {self.approximate!r}")
        return x

    def reference(self, x: np.ndarray) -> np.ndarray:
        v = x.astype(np.float64)
        if self.approximate == "tanh":
            out = 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))
        else:
            out = 0.5 * v * (1 + _np_erf(v / math.sqrt(2)))
        return out.astype(x.dtype)

    def compute(self, x: Any) -> Any:
        from tvm import te, tirx

        d = str(x.dtype)

        def gelu(v: Any) -> Any:
            half, one = tirx.const(0.5, d), tirx.const(1.0, d)
            if self.approximate == "tanh":
                k, c = tirx.const(math.sqrt(2 / math.pi), d), tirx.const(0.044715, d)
                return half * v * (one + tirx.tanh(k * (v + c * v * v * v)))
            return half * v * (one + tirx.erf(v * tirx.const(1 / math.sqrt(2), d)))

        return te.compute(x.shape, lambda *i: gelu(x(*i)), name="out")


__all__ = [
    "BINARY_OPS",
    "UNARY_OPS",
    "BinaryOp",
    "Cast",
    "Clip",
    "Gelu",
    "UnaryOp",
    "Where",
    *(cls.__name__ for cls in (*UNARY_OPS.values(), *BINARY_OPS.values())),
]
