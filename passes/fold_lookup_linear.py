"""A lookup into a constant table followed by a linear layer => one lookup into a folded table:

    gather(E, i) @ W (+ b)   =>   gather(E @ W (+ b), i)        (E [V, K], W [K, N], b [N])

Row r of `gather(E, i) @ W` is `E[i[r]] @ W`, so the product can be taken once, on the table, at
compile time: a token embedding feeding a projection (a TreeLSTM leaf, a factorized embedding)
then costs one row copy per token instead of K x N multiply-adds. A bias (or any constant the
result is shifted or scaled by that is the same for every row: rank <= 1) folds in too. The
folded table is built only when it holds at most `max_elements` values (16 MiB of float32 by
default), so large vocabularies keep their matmul. Results agree with the unfolded graph to
float32 rounding (the same products, summed in another order).
"""

from __future__ import annotations

from ember.ir import Builder, Graph, Node, Value, rewrite
from ember.ir.ops import Add, Div, Gather, Mul, Sub
from ember.passes._match import linear_weight
from ember.passes.registry import graph_pass

_ROW_CONSTANT_OPS = (Add, Sub, Mul, Div)


def _table_lookup(b: Builder, v: Value) -> tuple[Node, object] | None:
    """(the gather node, its table) when `v` is gather(constant [V, K], indices, axis=0)."""
    node = b.producer(v)
    if node is None or not isinstance(node.op, Gather) or node.op.axis != 0:
        return None
    table = b.const_value(node.inputs[0])
    return None if table is None or table.ndim != 2 else (node, table)


@graph_pass("fold-lookup-linear")
def fold_lookup_linear(g: Graph, *, max_elements: int = 1 << 22) -> Graph:
    def fold(b: Builder, node: Node) -> Value | None:
        w = linear_weight(b, node)
        if w is not None:
            found = _table_lookup(b, node.inputs[0])
            if found is None or found[1].shape[0] * w.shape[1] > max_elements:
                return None
            lookup, table = found
            folded = node.op.reference(table, w)
        elif isinstance(node.op, _ROW_CONSTANT_OPS):
            x, c = node.inputs
            found = _table_lookup(b, x)
            shift = b.const_value(c)
            if found is None or shift is None or shift.ndim > 1 or x.type != node.outputs[0].type:
                return None
            lookup, table = found
            if table.size > max_elements:
                return None
            folded = node.op.reference(table, shift)
        else:
            return None
        return b.emit(Gather(axis=0), b.const(folded, node.outputs[0].type.dtype), lookup.inputs[1])

    return rewrite(g, fold)
