"""op(a, b) computed twice => computed once: nodes with equal ops and inputs are merged."""

from __future__ import annotations

from ember.ir import Builder, Graph, Node, Op, Value, rewrite
from ember.passes.registry import graph_pass


@graph_pass("eliminate-common-subexpressions")
def eliminate_common_subexpressions(g: Graph) -> Graph:
    seen: dict[tuple[Op, tuple[Value, ...]], tuple[Value, ...]] = {}

    def merge(b: Builder, node: Node) -> tuple[Value, ...] | None:
        key = (node.op, node.inputs)
        if key in seen:
            return seen[key]
        seen[key] = node.outputs
        return None

    return rewrite(g, merge)
