"""Row-wise ops on rows looked up from a constant table => one lookup into a folded table:

    f(gather(T, i)) = gather(f(T), i)        (T a constant [V, K], gathered along axis 0)

Row r of `f(gather(T, i))` is `f(T[i[r]])` when f acts on each row alone, so f can run once, on
the table, at compile time. A token embedding feeding a projection (a TreeLSTM leaf, a factorized
embedding) then costs a row copy per token instead of K x N multiply-adds. The row-wise ops
folded here:

- matmul by a constant weight (a Linear), the fold that pays: it replaces the multiply-adds.
  A Linear over a concat whose parts include lookups (a TreeLSTM node over two looked-up
  children) is split by parts first, `concat(x1, x2) @ W = x1 @ W1 + x2 @ W2`, and each looked-up
  part folds to its own table;
- elementwise ops: unary ones, binary ones with a constant that is the same for every row
  (rank <= 1, e.g. a bias) or with another lookup by the same indices (`sigmoid(i) * tanh(u)`
  of a TreeLSTM cell), and `split` along the row;
  these only carry a lookup towards the next fold or the output. Folding one whose lookup has
  another reader keeps that table and adds a second; further folds may then drop both (in a
  TreeLSTM leaf, `h = sigmoid(o[i]) * tanh(c[i])` with c also an output: tanh(c) and sigmoid(o)
  become tables, then their product, so the tables left are c and h, as many as before). So the
  pass folds lookups with other readers too, and keeps that result unless a second fold that
  leaves such lookups alone (made only when the first met one) keeps no more matmuls and takes
  less memory.

A folded table is built only when it holds at most `max_elements` values (16 MiB of float32 by
default), so large vocabularies keep their ops. Results agree with the unfolded graph to the
rounding of the ops' numpy references (what `fold-constants` uses).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ember.ir import Builder, Graph, Node, Value, rewrite
from ember.ir.ops import Add, BinaryOp, Concat, Gather, MatMul, Split, UnaryOp
from ember.passes._match import linear_weight
from ember.passes.registry import graph_pass


class _Lookup(NamedTuple):
    table: np.ndarray  # [V, K]
    index: Value
    pinned: bool  # other readers keep its table, and this fold leaves such lookups alone


@graph_pass("fold-table-lookups")
def fold_table_lookups(g: Graph, *, max_elements: int = 1 << 22) -> Graph:
    eager, met_shared = _fold_lookups(g, max_elements, strict=False)
    if not met_shared:  # no lookup had another reader: the strict fold would be the same
        return eager
    strict, _ = _fold_lookups(g, max_elements, strict=True)
    return min(eager, strict, key=lambda f: (_matmuls(f), f.param_bytes))


def _matmuls(g: Graph) -> int:
    return sum(isinstance(n.op, MatMul) for n in g.nodes)


def _fold_lookups(g: Graph, max_elements: int, *, strict: bool) -> tuple[Graph, bool]:
    """One rewrite; `strict`: elementwise ops and splits fold only lookups with no other reader.
    Also says whether any lookup it considered had another reader."""
    readers = Counter(v for n in g.nodes for v in n.inputs) + Counter(g.outputs)
    origin: dict[Value, Value] = {}  # a folded lookup's value -> the value it replaced
    met_shared = False  # a lookup it considered had another reader

    def lookup(b: Builder, v: Value) -> _Lookup | None:
        """`v` as gather(constant [V, K], index, axis=0), if it is one within the size limit."""
        nonlocal met_shared
        node = b.producer(v)
        if node is None or not isinstance(node.op, Gather) or node.op.axis != 0:
            return None
        table = b.const_value(node.inputs[0])
        if table is None or table.ndim != 2 or table.size > max_elements:
            return None
        shared = readers[origin.get(v, v)] != 1
        met_shared |= shared
        return _Lookup(table, node.inputs[1], strict and shared)

    def fold(b: Builder, node: Node) -> tuple[Value, ...] | None:
        split = _split_concat(b, node, lookup, max_elements)
        if split is not None:
            return (split,)
        folded = _fold(b, node, lookup, max_elements)
        if folded is None:
            return None
        tables, index = folded
        for t, v in zip(tables, node.outputs, strict=True):
            if t.size > max_elements or tuple(v.type.shape) != (*index.type.shape, t.shape[-1]):
                return None  # too large, or a broadcast made more than one row per index
        outs = tuple(
            b.emit(Gather(axis=0), b.const(t, v.type.dtype), index)
            for t, v in zip(tables, node.outputs, strict=True)
        )
        origin.update(zip(outs, node.outputs, strict=True))
        return outs

    return rewrite(g, fold), met_shared


Lookup = Callable[[Builder, Value], "_Lookup | None"]
Folded = tuple[list[np.ndarray], Value]  # a table per output of the node, and the index


def _fold(b: Builder, node: Node, lookup: Lookup, max_elements: int) -> Folded | None:
    """The folded tables of `node`'s outputs and the lookup's index, or None."""
    op, ins = node.op, node.inputs
    w = linear_weight(b, node)
    if w is not None:
        x = lookup(b, ins[0])
        if x is None or x.table.shape[0] * w.shape[1] > max_elements:
            return None  # checked before the product: a [V, N] table over the limit is not built
        return [op.reference(x.table, w)], x.index
    if isinstance(op, UnaryOp | Split):
        x = lookup(b, ins[0])
        if x is None or x.pinned:
            return None
        if isinstance(op, Split):
            if op.axis not in (-1, ins[0].type.rank - 1):
                return None
            return list(Split(axis=1, sizes=op.sizes).reference(x.table)), x.index
        return [op.reference(x.table)], x.index
    if isinstance(op, BinaryOp):
        return _fold_binary(b, op, ins, lookup)
    return None


def _split_concat(b: Builder, node: Node, lookup: Lookup, max_elements: int) -> Value | None:
    """`concat(x1, ..., xn) @ W` (along the last axis) as `sum(xi @ Wi)`, its looked-up parts
    folded to `gather(Ti @ Wi, index)`; None unless some part folds."""
    w = linear_weight(b, node)
    joined = None if w is None else b.producer(node.inputs[0])
    if joined is None or not isinstance(joined.op, Concat):
        return None
    parts = joined.inputs
    if joined.op.axis not in (-1, parts[0].type.rank - 1):
        return None
    widths = [p.type.shape[-1] for p in parts]
    if not all(isinstance(k, int) for k in widths):  # TensorType keeps static dims as ints
        return None
    found = [lookup(b, p) for p in parts]
    foldable = [x is not None and x.table.shape[0] * w.shape[1] <= max_elements for x in found]
    if not any(foldable):
        return None
    terms = []
    rows = np.split(w, np.cumsum(widths)[:-1])  # W's rows for each part
    for part, x, fold, wi in zip(parts, found, foldable, rows, strict=True):
        if fold:
            assert x is not None
            table = b.const(MatMul().reference(x.table, wi), node.outputs[0].type.dtype)
            terms.append(b.emit(Gather(axis=0), table, x.index, loc=node.loc))
        else:
            terms.append(b.emit(MatMul(), part, b.const(wi), loc=node.loc))
    total = terms[0]
    for term in terms[1:]:
        total = b.emit(Add(), total, term, loc=node.loc)
    return total if tuple(total.type.shape) == tuple(node.outputs[0].type.shape) else None


def _fold_binary(b: Builder, op: BinaryOp, ins: tuple[Value, ...], lookup: Lookup) -> Folded | None:
    x, y = (lookup(b, v) for v in ins)
    cx, cy = (b.const_value(v) for v in ins)
    if any(v is not None and v.pinned for v in (x, y)):
        return None
    if x is not None and y is not None:
        same = x.index is y.index and x.table.shape == y.table.shape
        return ([op.reference(x.table, y.table)], x.index) if same else None
    if x is not None and cy is not None and cy.ndim <= 1:
        return [op.reference(x.table, cy)], x.index
    if y is not None and cx is not None and cx.ndim <= 1:
        return [op.reference(cx, y.table)], y.index
    return None
