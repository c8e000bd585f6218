"""Builder, verifier, printer, JSON round trip and the reference interpreter."""

from __future__ import annotations

import numpy as np
import pytest

from ember.errors import InputError, ShapeError, VerifyError
from ember.ir import (
    Builder,
    Graph,
    Node,
    Value,
    from_json,
    interpret,
    print_graph,
    sym,
    to_json,
    verify,
)
from ember.ir.ops import Add, MatMul, Reshape, Slice, Softmax, Split
from tests.helpers import assert_close


def _attention_like() -> Graph:
    b = Builder("attn")
    seq = sym("seq")
    b.symbol_ranges["seq"] = (1, 64)
    x = b.input((2, seq, 8), "float32", name="x")
    w = b.const(np.arange(32, dtype=np.float32).reshape(8, 4) / 32, name="w")
    y = b.emit(Softmax(-1), b.emit(MatMul(), x, w))
    head, tail = b.emit_multi(Split(axis=2, sizes=(1, 3)), y)
    flat = b.emit(Reshape((2, -1)), tail)
    b.output(head, b.emit(Slice((1,), (0,), (seq,), (1,)), flat), names=("head", "tail"))
    return b.build()


def test_printer_is_deterministic_and_readable():
    text = print_graph(_attention_like())
    assert text == print_graph(_attention_like())
    assert "%0 = matmul(%x, %c0) : f32[2,seq,4]" in text
    assert "%2, %3 = split[axis=2,sizes=(1,3)](%1) : f32[2,seq,1], f32[2,seq,3]" in text
    assert "%4 = reshape[shape=(2,-1)](%3) : f32[2,3*seq]" in text
    assert "return %2 as head, %5 as tail" in text


def test_json_round_trip_keeps_structure_weights_and_ranges(rng):
    g = _attention_like()
    back = from_json(to_json(g))
    assert print_graph(back) == print_graph(g)
    assert back.symbol_ranges == {"seq": (1, 64)}
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    for a, b in zip(interpret(back, x), interpret(g, x), strict=True):
        np.testing.assert_array_equal(a, b)


def test_interpreter_matches_numpy(rng):
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    head, tail = interpret(_attention_like(), x)
    logits = x @ (np.arange(32, dtype=np.float32).reshape(8, 4) / 32)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    assert_close(head, probs[:, :, :1])
    assert_close(tail, probs[:, :, 1:].reshape(2, -1)[:, :5])


def test_symbolic_dim_constraint_is_checked(rng):
    g = _attention_like()
    with pytest.raises(InputError, match=r"dim seq=65 violates its constraint seq in \[1, 64\]"):
        interpret(g, rng.standard_normal((2, 65, 8)).astype(np.float32))
    with pytest.raises(InputError, match="expected 1 inputs"):
        interpret(g)


def test_shape_errors_name_op_and_shapes():
    b = Builder()
    x = b.input((8, 64), "float32")
    y = b.input((32, 16), "float32")
    with pytest.raises(ShapeError, match=r"matmul: inner dims differ: f32\[8,64\] @ f32\[32,16\]"):
        b.emit(MatMul(), x, y)
    with pytest.raises(ShapeError, match="softmax: axis=3 is out of range"):
        b.emit(Softmax(3), x)


def test_verifier_reports_use_before_definition_with_context():
    b = Builder()
    x = b.input((4,), "float32")
    stray = Value(x.type)
    node = Node(Add(), (x, stray), (Value(x.type),))
    g = Graph((x,), (node,), node.outputs, output_names=("out",))
    with pytest.raises(VerifyError, match="add uses a value before it is defined") as info:
        verify(g)
    assert any(">>" in note for note in info.value.__notes__)


def test_verifier_catches_wrong_output_type():
    b = Builder()
    x = b.input((4,), "float32")
    node = Node(Add(), (x, x), (Value(x.type.with_dtype("float16")),))
    g = Graph((x,), (node,), node.outputs, output_names=("out",))
    with pytest.raises(
        VerifyError, match=r"add infers \['f32\[4\]'\] but outputs are \['f16\[4\]'\]"
    ):
        verify(g)
