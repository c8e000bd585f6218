"""`verify(g)`: SSA well-formedness and type agreement; prints the IR around a fault."""

from __future__ import annotations

from ember.errors import EmberError, VerifyError
from ember.ir.graph import Graph, Node, Value
from ember.ir.printer import print_graph

__all__ = ["verify"]


def verify(g: Graph) -> Graph:
    """Check that values are defined once and before use, and that ops' rules match outputs."""
    defined: set[Value] = set()

    def fail(index: int | None, message: str) -> VerifyError:
        err = VerifyError(f"invalid IR in graph {g.name!r}: {message}")
        err.add_note(print_graph(g, highlight=index, context=5))
        return err

    for v in (*g.inputs, *g.consts):
        if v in defined:
            raise fail(None, f"{v} is defined twice")
        defined.add(v)
    for i, node in enumerate(g.nodes):
        problem = _check_node(node, defined)
        if problem:
            raise fail(i, problem)
        defined.update(node.outputs)
    for v in g.outputs:
        if v not in defined:
            raise fail(None, f"graph output {v} is never defined")
    if len(g.output_names) != len(g.outputs):
        raise fail(None, f"{len(g.outputs)} outputs but {len(g.output_names)} output names")
    return g


def _check_node(node: Node, defined: set[Value]) -> str | None:
    """What is wrong with `node` given the values defined before it, or None."""
    for v in node.inputs:
        if v not in defined:
            return f"{node.op.name} uses a value before it is defined ({v.type})"
    try:
        inferred = node.op.infer(*(v.type for v in node.inputs))
    except EmberError as err:
        return f"{node.op.name} rejects its inputs: {err}"
    types = inferred if isinstance(inferred, tuple) else (inferred,)
    got = tuple(v.type for v in node.outputs)
    if types != got:
        return (
            f"{node.op.name} infers {list(map(str, types))} but outputs are {list(map(str, got))}"
        )
    redefined = [v for v in node.outputs if v in defined]
    return f"{node.op.name} redefines {redefined[0]}" if redefined else None
