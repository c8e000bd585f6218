"""The state of one ONNX import: the builder, ONNX value names, constant folding, and the
values of small integer tensors (shapes) known at import time, possibly symbolic."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from ember.errors import UnsupportedError
from ember.ir import Builder, DType, Loc, Op, TensorType, Value, ops
from ember.ir.types import Dim

__all__ = ["ConstantInputError", "Context", "Converter", "OnnxNode", "onnx_dtype"]

# Ops whose numpy reference also runs on object arrays of sympy dims: shape arithmetic.
_SYMBOLIC_FOLDABLE = (
    ops.Gather, ops.Concat, ops.Reshape, ops.Slice, ops.Transpose, ops.Add, ops.Sub, ops.Mul,
    ops.Expand, ops.Maximum, ops.Minimum,
)  # fmt: skip


def onnx_dtype(elem_type: int, where: str) -> DType:
    """The DType of an ONNX TensorProto element type; UnsupportedError for the rest."""
    from onnx import helper

    try:
        dtype = DType.of(helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        dtype = DType.int4  # rejected below with the ONNX type's name
    if dtype is DType.int4:  # ember's int4 is packed two per byte; ONNX's is not
        name = helper.tensor_dtype_to_string(elem_type) if elem_type else "undefined"
        raise UnsupportedError(f"{where}: element type {name} is not supported by ember")
    return dtype


class ConstantInputError(UnsupportedError):
    """A shape-like operand (Reshape's shape, TopK's K, ...) is a graph input, known only at run
    time. `input_name` names it: bind it to a value (make it an initializer) to import."""

    def __init__(self, message: str, input_name: str) -> None:
        super().__init__(message)
        self.input_name = input_name


@dataclass
class OnnxNode:
    """One ONNX node with its inputs resolved to IR values (None for an omitted optional)."""

    op_type: str
    name: str
    inputs: tuple[Value | None, ...]
    attrs: dict[str, Any]
    num_outputs: int

    def input(self, i: int) -> Value | None:
        return self.inputs[i] if i < len(self.inputs) else None

    def required(self, i: int) -> Value:
        """Input i, which this converter needs; UnsupportedError when the model omits it."""
        v = self.input(i)
        if v is None:
            raise self.unsupported(f"input {i}", None)
        return v

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def unsupported(self, attribute: str, value: object) -> UnsupportedError:
        return UnsupportedError(
            f"{self.op_type} node {self.name!r}: attribute {attribute}={value!r} is not supported"
        )


Converter = Callable[["Context", OnnxNode], "Value | Sequence[Value]"]


def _is_symbolic(op: Op) -> bool:
    def symbolic(v: object) -> bool:
        if isinstance(v, tuple):
            return any(symbolic(e) for e in v)
        return isinstance(v, sympy.Expr) and not v.is_number

    return any(symbolic(v) for v in op.attrs.values())


@dataclass
class Context:
    """Everything converters share: `emit` folds ops whose inputs are all constants."""

    b: Builder
    opset: int
    known: dict[Value, np.ndarray] = field(default_factory=dict)
    loc: Loc | None = None

    def const(self, array: object, dtype: DType | None = None) -> Value:
        return self.b.const(np.asarray(array, dtype=dtype.numpy if dtype else None))

    def scalar(self, value: float | int | bool, dtype: DType) -> Value:
        return self.b.const(np.array(value, dtype=dtype.numpy))

    def array(self, v: Value | None) -> np.ndarray | None:
        """v's value if known at import time: numeric for constants, object (sympy) for shapes."""
        if v is None:
            return None
        found = self.b.consts.get(v)
        return found if found is not None else self.known.get(v)

    def static(self, v: Value | None, node: OnnxNode, what: str) -> np.ndarray:
        """A constant input's numpy value; UnsupportedError if it is computed at run time."""
        found = None if v is None else self.b.consts.get(v)
        if found is None:
            raise self._not_constant(v, node, what)
        return found

    def _not_constant(self, v: Value | None, node: OnnxNode, what: str) -> UnsupportedError:
        where = f"{node.op_type} node {node.name!r}: input {what!r} must be a constant"
        source = None if v is None else self._source_input(v)
        if source is not None:
            how = "it is" if source is v else "it is computed from"
            return ConstantInputError(
                f"{where}, but {how} graph input {source.name!r}; make it an initializer to "
                "import it",
                source.name or "",
            )
        return UnsupportedError(
            f"{where} (an initializer, or computed from constants and tensor shapes)"
        )

    def _source_input(self, v: Value) -> Value | None:
        """The graph input that v's value depends on at run time, if it is v or shape-like (a
        scalar or a short integer vector: binding data inputs would fold the model away)."""
        stack, seen = [v], set()
        while stack:
            u = stack.pop()
            if u in seen or u in self.b.consts:
                continue
            seen.add(u)
            if u in self.b.inputs:
                return u if u is v or _shape_like(u.type) else None
            producer = self.b.producer(u)
            if producer is not None:
                stack.extend(reversed(producer.inputs))
        return None

    def dims(self, v: Value, node: OnnxNode, what: str) -> tuple[Dim, ...]:
        """A shape-like input as ints and sympy dims (constant, or derived from `Shape`)."""
        found = self.array(v)
        if found is None:
            raise self._not_constant(v, node, what)
        return tuple(_dim(d) for d in found.reshape(-1))

    def emit(self, op: Op, *inputs: Value) -> Value:
        (out,) = self.emit_multi(op, *inputs)
        return out

    def emit_multi(self, op: Op, *inputs: Value) -> tuple[Value, ...]:
        consts = [self.b.consts.get(v) for v in inputs]
        if all(c is not None for c in consts) and not _is_symbolic(op):
            inferred = op.infer(*(v.type for v in inputs))
            types = inferred if isinstance(inferred, tuple) else (inferred,)
            result = op.reference(*consts)  # type: ignore[arg-type]
            results = result if isinstance(result, tuple) else (result,)
            return tuple(
                self.b.const(np.asarray(r).astype(t.dtype.numpy))
                for r, t in zip(results, types, strict=True)
            )
        outs = self.b.emit_multi(op, *inputs, loc=self.loc)
        values = [self.array(v) for v in inputs]
        if isinstance(op, _SYMBOLIC_FOLDABLE) and inputs and all(a is not None for a in values):
            self._fold_symbolic(op, outs[0], values)  # type: ignore[arg-type]
        return outs

    def _fold_symbolic(self, op: Op, out: Value, values: list[np.ndarray]) -> None:
        try:
            result = np.asarray(op.reference(*values), dtype=object)
        except (TypeError, ValueError, IndexError):
            return
        self.known[out] = np.vectorize(_dim, otypes=[object])(result) if result.size else result

    def known_dims(self, dims: Sequence[Dim]) -> Value:
        """An int64 vector holding `dims`; a constant when they are all static."""
        if all(isinstance(d, int) for d in dims):
            return self.const(np.array(dims, dtype=np.int64))
        out = self.b.emit(ops.DimValues(tuple(dims)), loc=self.loc)
        self.known[out] = np.array(list(dims), dtype=object)
        return out

    def cast(self, v: Value, dtype: DType) -> Value:
        return v if v.type.dtype == dtype else self.emit(ops.Cast(dtype), v)


def _shape_like(t: TensorType) -> bool:
    """Small enough to specialize on: a scalar, or a short integer or bool vector."""
    if not t.is_static:
        return False
    integral = t.dtype.is_int or t.dtype is DType.bool
    return t.numel == 1 or (integral and t.numel <= 16)


def _dim(d: object) -> Dim:
    if isinstance(d, sympy.Expr):
        simplified = sympy.simplify(d)
        return int(simplified) if simplified.is_Integer else simplified
    return int(d)  # type: ignore[call-overload]
