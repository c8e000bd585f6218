"""`rewrite`: one forward sweep of a rule over a graph, the engine behind every pass."""

from __future__ import annotations

from collections.abc import Callable

from ember.ir.builder import Builder
from ember.ir.graph import Graph, Node, Value

__all__ = ["Rule", "rewrite"]

Rule = Callable[[Builder, Node], "Value | tuple[Value, ...] | None"]


def rewrite(g: Graph, rule: Rule) -> Graph:
    """Apply `rule` to each node, in order, with its inputs already rewritten.

    `None` keeps the node; returned Values replace its outputs. Unused nodes are dropped.
    """
    b = Builder.like(g)
    mapping: dict[Value, Value] = {}
    for node in g.nodes:
        inputs = tuple(mapping.get(v, v) for v in node.inputs)
        if inputs != node.inputs:
            node = Node(node.op, inputs, node.outputs, node.loc)
        result = rule(b, node)
        if result is None:
            b.add_node(node)
            continue
        replaced = result if isinstance(result, tuple) else (result,)
        if len(replaced) != len(node.outputs):
            raise ValueError(
                f"rule replaced {len(node.outputs)} outputs of {node.op} with {len(replaced)}"
            )
        mapping.update(zip(node.outputs, replaced, strict=True))
    b.output(*(mapping.get(v, v) for v in g.outputs), names=g.output_names)
    return b.build()
