"""`Builder`: the only way to make a `Graph`; every value it emits is typed by its op's rule."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ember.errors import ShapeError
from ember.ir.graph import Graph, Loc, Node, Value
from ember.ir.op import Op
from ember.ir.types import DType, TensorType

__all__ = ["Builder"]


class Builder:
    """Appends typed nodes; `build()` returns an immutable Graph without unused nodes/consts."""

    def __init__(self, name: str = "main") -> None:
        self.name = name
        self.inputs: list[Value] = []
        self.nodes: list[Node] = []
        self.outputs: list[Value] = []
        self.output_names: list[str] = []
        self.consts: dict[Value, np.ndarray] = {}
        self.symbol_ranges: dict[str, tuple[int, int | None]] = {}
        self._producers: dict[Value, Node] = {}

    def input(self, shape: object, dtype: object = "float32", name: str | None = None) -> Value:
        v = Value(TensorType(shape, dtype), name)  # type: ignore[arg-type]
        self.inputs.append(v)
        return v

    def const(self, array: object, dtype: object = None, name: str | None = None) -> Value:
        """A constant (a weight): stored once, never copied by passes."""
        arr = np.asarray(array, dtype=DType.of(dtype).numpy if dtype is not None else None)
        if arr.dtype == np.float64 and dtype is None and not isinstance(array, np.ndarray):
            arr = arr.astype(np.float32)  # python floats default to f32, like torch
        v = Value(TensorType(arr.shape, arr.dtype), name)
        self.consts[v] = arr
        return v

    def add_const(self, v: Value, array: np.ndarray) -> Value:
        """Keep an existing constant Value (used when copying a graph)."""
        self.consts[v] = array
        return v

    def emit(self, op: Op, *inputs: Value, loc: Loc | None = None) -> Value:
        """Append `op(*inputs)`; returns its single output (see `emit_multi` for several)."""
        outs = self.emit_multi(op, *inputs, loc=loc)
        if len(outs) != 1:
            raise ShapeError(f"{op.name} has {len(outs)} outputs; use emit_multi")
        return outs[0]

    def emit_multi(self, op: Op, *inputs: Value, loc: Loc | None = None) -> tuple[Value, ...]:
        try:
            inferred = op.infer(*(v.type for v in inputs))
        except ShapeError as err:
            if loc is not None:
                err.add_note(f"at {loc}")
            raise
        types = inferred if isinstance(inferred, tuple) else (inferred,)
        node = Node(op, tuple(inputs), tuple(Value(t) for t in types), loc)
        self.add_node(node)
        return node.outputs

    def add_node(self, node: Node) -> None:
        """Append an already-typed node (used by `rewrite` to keep unchanged nodes)."""
        self.nodes.append(node)
        for v in node.outputs:
            self._producers[v] = node

    def producer(self, v: Value) -> Node | None:
        return self._producers.get(v)

    def const_value(self, v: Value) -> np.ndarray | None:
        return self.consts.get(v)

    def output(self, *values: Value, names: tuple[str, ...] | None = None) -> None:
        start = len(self.outputs)
        self.outputs.extend(values)
        self.output_names.extend(
            names or (v.name or f"output{start + i}" for i, v in enumerate(values))
        )

    def build(self, symbol_ranges: Mapping[str, tuple[int, int | None]] | None = None) -> Graph:
        live = set(self.outputs)
        kept: list[Node] = []
        for node in reversed(self.nodes):
            if any(v in live for v in node.outputs):
                kept.append(node)
                live.update(node.inputs)
        consts = {v: a for v, a in self.consts.items() if v in live}
        ranges = dict(self.symbol_ranges) | dict(symbol_ranges or {})
        return Graph(
            tuple(self.inputs),
            tuple(reversed(kept)),
            tuple(self.outputs),
            consts,
            ranges,
            self.name,
            tuple(self.output_names),
        )

    @classmethod
    def like(cls, g: Graph) -> Builder:
        """A builder with g's inputs, constants and symbol ranges, and no nodes yet."""
        b = cls(g.name)
        b.inputs = list(g.inputs)
        b.consts = dict(g.consts)
        b.symbol_ranges = dict(g.symbol_ranges)
        return b
