"""The immutable SSA graph: `Value`, `Node`, `Graph`, and `Loc` (a source location)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ember.ir.op import Op
from ember.ir.types import TensorType

__all__ = ["Graph", "Loc", "Node", "Value"]


@dataclass(frozen=True)
class Loc:
    """Where a node came from: a file and line, or an ONNX node name."""

    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, eq=False)  # identity *is* the SSA name
class Value:
    """One SSA value. `name` is a hint (graph inputs and outputs keep their user-facing names)."""

    type: TensorType
    name: str | None = None

    def __repr__(self) -> str:
        return f"Value({self.name or hex(id(self))}: {self.type})"


@dataclass(frozen=True)
class Node:
    """An op applied to input values, defining output values."""

    op: Op
    inputs: tuple[Value, ...]
    outputs: tuple[Value, ...]
    loc: Loc | None = None


@dataclass(frozen=True, eq=False)  # compare graphs with graph_equal(), not ==
class Graph:
    """Inputs, nodes in topological order, outputs and constants (weights).

    `symbol_ranges` bounds symbolic dims, by symbol name: (min, max), inclusive; max may be None.
    `output_names` are the user-facing names of the outputs (passes keep them).
    """

    inputs: tuple[Value, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[Value, ...]
    consts: Mapping[Value, np.ndarray] = field(default_factory=dict)
    symbol_ranges: Mapping[str, tuple[int, int | None]] = field(default_factory=dict)
    name: str = "main"
    output_names: tuple[str, ...] = ()

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(v.name or f"input{i}" for i, v in enumerate(self.inputs))

    @cached_property
    def producers(self) -> dict[Value, Node]:
        return {v: node for node in self.nodes for v in node.outputs}

    def producer(self, v: Value) -> Node | None:
        return self.producers.get(v)

    @cached_property
    def users(self) -> dict[Value, list[Node]]:
        found: dict[Value, list[Node]] = {}
        for node in self.nodes:
            for v in node.inputs:
                found.setdefault(v, []).append(node)
        return found

    @property
    def param_bytes(self) -> int:
        return sum(a.nbytes for a in self.consts.values())

    def op_histogram(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.nodes:
            counts[node.op.name] = counts.get(node.op.name, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def __str__(self) -> str:
        from ember.ir.printer import print_graph

        return print_graph(self)
