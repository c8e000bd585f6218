"""The one deterministic text form of a graph: `%4 = softmax[axis=-1](%3) : f32[batch,128]`."""

from __future__ import annotations

import re

from ember.ir.graph import Graph, Node, Value

__all__ = ["Namer", "print_graph", "print_node"]


class Namer:
    """Names values at print time: inputs by their sanitized names, everything else %N."""

    def __init__(self, g: Graph) -> None:
        self.names: dict[Value, str] = {}
        taken: set[str] = set()
        for i, v in enumerate(g.inputs):
            name = re.sub(r"\W", "_", v.name or f"arg{i}")
            while name in taken:
                name += "_"
            taken.add(name)
            self.names[v] = "%" + name
        for i, v in enumerate(g.consts):
            self.names[v] = f"%c{i}"
        counter = 0
        for node in g.nodes:
            for v in node.outputs:
                self.names[v] = f"%{counter}"
                counter += 1

    def __call__(self, v: Value) -> str:
        return self.names.get(v, f"%<undefined:{v.type}>")


def print_node(node: Node, name: Namer) -> str:
    outs = ", ".join(name(v) for v in node.outputs)
    args = ", ".join(name(v) for v in node.inputs)
    types = ", ".join(str(v.type) for v in node.outputs)
    loc = f"  # {node.loc}" if node.loc else ""
    return f"{outs} = {node.op}({args}) : {types}{loc}"


def print_graph(g: Graph, highlight: int | None = None, context: int | None = None) -> str:
    """The graph as text; with `highlight`, only `context` nodes either side, marked `>>`."""
    name = Namer(g)
    params = ", ".join(f"{name(v)}: {v.type}" for v in g.inputs)
    lines = [f"graph {g.name}({params}) {{"]
    lines += [f"  {name(v)} = const : {v.type}" for v in g.consts]
    lo, hi = 0, len(g.nodes)
    if highlight is not None and context is not None:
        lo, hi = max(0, highlight - context), min(len(g.nodes), highlight + context + 1)
        if lo > 0:
            lines.append("  ...")
    for i in range(lo, hi):
        mark = ">>" if i == highlight else "  "
        lines.append(f"{mark}{print_node(g.nodes[i], name)}")
    if hi < len(g.nodes):
        lines.append("  ...")
    outs = ", ".join(f"{name(v)} as {n}" for v, n in zip(g.outputs, g.output_names, strict=True))
    lines += [f"  return {outs}", "}"]
    return "\n".join(lines)
