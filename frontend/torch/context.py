"""`Context`: what a converter sees: the builder, the fx node being converted, and helpers for
scalars, casts, symbolic dims and type promotion."""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy

from ember.frontend.torch.dtypes import promote, to_dtype
from ember.ir import Builder, DType, Loc, Op, Value
from ember.ir.ops import Cast, Reshape
from ember.ir.ops.layout import DimValues

__all__ = ["Context", "Scalar"]

Scalar = int | float | bool | sympy.Expr


class Context:
    """Converter state for one fx node: emit ops at its source location, read its fake outputs."""

    def __init__(self, builder: Builder, symbols: dict[sympy.Symbol, sympy.Symbol]) -> None:
        self.b = builder
        self.symbols = symbols
        self.node: Any = None
        self.loc: Loc | None = None

    def emit(self, op: Op, *inputs: Value) -> Value:
        return self.b.emit(op, *inputs, loc=self.loc)

    def emit_multi(self, op: Op, *inputs: Value) -> tuple[Value, ...]:
        return self.b.emit_multi(op, *inputs, loc=self.loc)

    # -- the node's outputs, as torch traced them --------------------------------------------

    def out_meta(self, index: int | None = None) -> Any:
        val = self.node.meta["val"]
        return val[index] if index is not None else val

    def out_dtype(self, index: int | None = None) -> DType:
        return to_dtype(self.out_meta(index).dtype)

    def out_shape(self, index: int | None = None) -> tuple[Any, ...]:
        return tuple(self.dim(d) for d in self.out_meta(index).shape)

    # -- scalars and dims -------------------------------------------------------------------

    def dim(self, d: Any) -> Any:
        """A torch size (int or SymInt) as an int or a sympy expression over ember symbols."""
        if isinstance(d, sympy.Expr):
            return int(d) if d.is_Integer else d
        if hasattr(d, "node") and hasattr(d.node, "expr"):
            expr = sympy.sympify(d.node.expr).xreplace(self.symbols)
            return int(expr) if expr.is_Integer else expr
        return int(d)

    def const(self, value: Any, dtype: DType) -> Value:
        """A 0-d constant; a symbolic value becomes a dim_values read."""
        if isinstance(value, sympy.Expr) and not value.is_number:
            vector = self.emit(DimValues((value,)))
            return self.cast(self.emit(Reshape(()), vector), dtype)
        return self.b.const(np.asarray(value, dtype=dtype.numpy))

    def cast(self, v: Value, dtype: DType) -> Value:
        return v if v.type.dtype is dtype else self.emit(Cast(dtype), v)

    def tensor(self, x: Value | Scalar, dtype: DType) -> Value:
        """x as a Value of `dtype`: scalars become 0-d constants, tensors get a cast if needed."""
        return self.cast(x, dtype) if isinstance(x, Value) else self.const(x, dtype)

    def promote(self, *xs: Value | Scalar) -> DType:
        """torch's result type of tensors and scalars."""
        return promote(*(_probe(x) for x in xs))

    def promoted(self, *xs: Value | Scalar) -> list[Value]:
        dtype = self.promote(*xs)
        return [self.tensor(x, dtype) for x in xs]

    def reshape(self, v: Value, shape: tuple[Any, ...]) -> Value:
        return v if tuple(v.type.shape) == tuple(shape) else self.emit(Reshape(tuple(shape)), v)


def _probe(x: Value | Scalar) -> Any:
    if isinstance(x, Value):
        return (x.type.dtype, x.type.rank)
    if isinstance(x, sympy.Expr):
        return 1 if x.is_integer else 1.0
    return x
