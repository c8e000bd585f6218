from __future__ import annotations

from ember.ir import Builder, Graph, sym
from ember.ir.ops import Cast, Exp, Reshape, Transpose
from ember.passes.canonicalize import canonicalize
from tests.helpers import check_pass


def _transposes(*perms: tuple[int, ...]) -> Graph:
    b = Builder()
    v = b.input((2, 3, 4), "float32", name="x")
    for p in perms:
        v = b.emit(Transpose(p), v)
    b.output(b.emit(Exp(), v))
    return b.build()


def test_two_transposes_become_one():
    check_pass(
        canonicalize, before=_transposes((1, 0, 2), (0, 2, 1)), expected=_transposes((1, 2, 0))
    )


def test_transposes_composing_to_identity_vanish():
    check_pass(canonicalize, before=_transposes((1, 0, 2), (1, 0, 2)), expected=_transposes())


def test_single_transpose_is_kept():
    check_pass(canonicalize, before=_transposes((1, 0, 2)), expected=_transposes((1, 0, 2)))


def _reshapes(*shapes: tuple[object, ...], cast: str | None = None) -> Graph:
    b = Builder()
    seq = sym("seq")
    v = b.input((seq, 4), "float32", name="x")
    for s in shapes:
        v = b.emit(Reshape(tuple(seq if d == "seq" else d for d in s)), v)
    if cast:
        v = b.emit(Cast(cast), v)
    b.output(b.emit(Exp(), v))
    return b.build()


def test_reshape_chain_and_noop_cast_fold_with_symbolic_dims():
    before = _reshapes(("seq", 2, 2), (-1,), ("seq", 4), cast="float32")
    check_pass(canonicalize, before=before, expected=_reshapes())


def test_reshape_that_changes_shape_is_kept():
    check_pass(canonicalize, before=_reshapes(("seq", 2, 2)), expected=_reshapes(("seq", 2, 2)))
