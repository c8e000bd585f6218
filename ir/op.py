"""`Op`, the base class of every IR operation, and the registry that names them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import sympy

from ember.errors import ShapeError
from ember.ir.types import DType, TensorType

__all__ = ["OPS", "Op", "register_op"]

OPS: dict[str, type[Op]] = {}
_O = TypeVar("_O", bound="type[Op]")


def register_op(cls: _O) -> _O:
    """Add an op class to the registry under its `name`; names are unique."""
    if cls.name in OPS:
        raise TypeError(f"op name {cls.name!r} is registered twice ({OPS[cls.name]} and {cls})")
    OPS[cls.name] = cls
    return cls


@dataclasses.dataclass(frozen=True)
class Op:
    """An operation: typed attributes (dataclass fields), a shape rule, semantics, a TVM compute.

    Subclasses define `infer` (pure; raises ShapeError), `reference` (numpy: the semantics) and
    `compute` (TVM TE, no scheduling). Ops whose lowering is not one TE compute override `lower`.
    """

    name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        """Coerce convenient spellings: dtype names to DType, lists to tuples (ops stay hashable)."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(f.default, DType) and not isinstance(value, DType):
                object.__setattr__(self, f.name, DType.of(value))
            elif isinstance(value, list):
                object.__setattr__(self, f.name, _tuples(value))

    def infer(self, *inputs: TensorType) -> TensorType | tuple[TensorType, ...]:
        raise NotImplementedError

    def reference(self, *inputs: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        raise NotImplementedError

    def compute(self, *inputs: Any) -> Any:
        raise NotImplementedError(f"{self.name} has no TE compute")

    def lower(self, ctx: Any, args: Sequence[Any]) -> Any:
        """Emit this op into Relax through `ctx` (codegen's LowerContext).

        Returns one Relax value, a tuple-typed value (a TE function with several outputs), or a
        list with one Relax value per output.

        The default emits `compute` as one TE function. `ctx.shape(i)` gives output i's shape
        as TIR dims, for ops whose compute needs its symbolic output shape.
        """
        return ctx.emit_te(self.compute, *args)

    @property
    def is_symbolic(self) -> bool:
        """Whether an attribute holds a symbolic dim (its value is known only at run time)."""
        return any(_has_symbol(v) for v in self.attrs.values())

    @property
    def attrs(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def error(self, message: str) -> ShapeError:
        return ShapeError(f"{self.name}: {message}")

    def __str__(self) -> str:
        attrs = ",".join(f"{k}={_attr_str(v)}" for k, v in self.attrs.items())
        return f"{self.name}[{attrs}]" if attrs else self.name


def _has_symbol(value: object) -> bool:
    if isinstance(value, tuple):
        return any(_has_symbol(v) for v in value)
    return isinstance(value, sympy.Expr) and bool(value.free_symbols)


def _tuples(value: object) -> object:
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def _attr_str(v: object) -> str:
    if isinstance(v, tuple):
        return "(" + ",".join(_attr_str(x) for x in v) + ")"
    if isinstance(v, float):
        return repr(v)
    return str(v)
