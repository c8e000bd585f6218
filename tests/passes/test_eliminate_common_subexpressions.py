from __future__ import annotations

from ember.ir import Builder, Graph
from ember.ir.ops import Add, Exp, Softmax
from ember.passes.eliminate_common_subexpressions import eliminate_common_subexpressions
from tests.helpers import check_pass


def _graph(duplicate: bool, axis2: int = -1) -> Graph:
    b = Builder()
    x = b.input((2, 3), "float32", name="x")
    a = b.emit(Softmax(-1), b.emit(Exp(), x))
    c = b.emit(Softmax(axis2), b.emit(Exp(), x)) if duplicate else a
    b.output(b.emit(Add(), a, c))
    return b.build()


def test_identical_nodes_merge():
    check_pass(eliminate_common_subexpressions, before=_graph(True), expected=_graph(False))


def test_nodes_with_different_attributes_are_kept():
    b = Builder()
    x = b.input((2, 3), "float32", name="x")
    e = b.emit(Exp(), x)
    b.output(b.emit(Add(), b.emit(Softmax(-1), e), b.emit(Softmax(0), e)))
    expected = b.build()
    check_pass(eliminate_common_subexpressions, before=_graph(True, axis2=0), expected=expected)
