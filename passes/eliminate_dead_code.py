"""Nodes whose outputs nothing uses => gone (every op is pure), and unused constants with them."""

from __future__ import annotations

from ember.ir import Graph, rewrite
from ember.passes.registry import graph_pass


@graph_pass("eliminate-dead-code")
def eliminate_dead_code(g: Graph) -> Graph:
    return rewrite(g, lambda b, node: None)  # the rebuild keeps only what the outputs reach
