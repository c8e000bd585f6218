from __future__ import annotations

import numpy as np
import torch

import ember
from ember.examples.autobatch_models import LeafCell
from ember.ir import Builder, Graph, sym
from ember.ir.ops import Add, Concat, Gather, MatMul, Mul, Tanh
from ember.passes.fold_table_lookups import fold_table_lookups
from tests.helpers import check_pass

rng = np.random.default_rng(0)
E = rng.standard_normal((6, 4)).astype(np.float32)
W = rng.standard_normal((4, 5)).astype(np.float32)
BIAS = rng.standard_normal(5).astype(np.float32)


def _lookup_linear(table: np.ndarray = E, shift: np.ndarray = BIAS) -> Graph:
    """gather(table, i) @ W + shift, with i of a symbolic length."""
    b = Builder()
    i = b.input((sym("n"),), "int64", name="i")
    rows = b.emit(Gather(axis=0), b.const(table), i)
    b.output(b.emit(Add(), b.emit(MatMul(), rows, b.const(W)), b.const(shift)))
    return b.build()


def _folded(table: np.ndarray) -> Graph:
    b = Builder()
    i = b.input((sym("n"),), "int64", name="i")
    b.output(b.emit(Gather(axis=0), b.const(table), i))
    return b.build()


def test_lookup_then_linear_becomes_one_lookup():
    after = check_pass(fold_table_lookups, before=_lookup_linear(), expected=_folded(E @ W + BIAS))
    (table,) = after.consts.values()
    np.testing.assert_allclose(table, E @ W + BIAS, rtol=1e-6)


def test_tables_over_the_limit_keep_their_matmul():
    g = _lookup_linear()
    check_pass(fold_table_lookups, before=g, expected=g, max_elements=6 * 5 - 1)


def test_a_shift_that_differs_by_row_is_kept():
    """A rank-2 constant broadcast over the looked-up rows is not the same for every row."""
    b = Builder()
    i = b.input((3,), "int64", name="i")
    rows = b.emit(Gather(axis=0), b.const(E), i)
    b.output(b.emit(Mul(), rows, b.const(rng.standard_normal((3, 4)).astype(np.float32))))
    g = b.build()
    check_pass(fold_table_lookups, before=g, expected=g)


def test_a_lookup_into_an_input_is_kept():
    b = Builder()
    table = b.input((6, 4), "float32", name="table")
    i = b.input((3,), "int64", name="i")
    b.output(b.emit(MatMul(), b.emit(Gather(axis=0), table, i), b.const(W)))
    g = b.build()
    check_pass(fold_table_lookups, before=g, expected=g)


class _EmbedProject(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(50, 16)
        self.proj = torch.nn.Linear(16, 24)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.proj(self.emb(tokens)))


def test_embedding_then_linear_through_ember_compile():
    torch.manual_seed(0)
    model = _EmbedProject().eval()
    tokens = torch.tensor([[3, 49, 0, 7], [1, 1, 2, 30]])
    compiled = ember.compile(model, [tokens], cache=False)
    assert not any(isinstance(n.op, MatMul) for n in compiled.programs[0].graph.nodes)
    with torch.no_grad():
        want = model(tokens).numpy()
    np.testing.assert_allclose(compiled(tokens).numpy(), want, rtol=1e-5, atol=1e-6)


W2 = rng.standard_normal((8, 5)).astype(np.float32)  # a Linear over two concatenated rows


def _linear_over_concat(right_is_lookup: bool) -> Graph:
    """concat(gather(E, i), gather(2E, j) or an input x) @ W2: a TreeLSTM node's gates."""
    b = Builder()
    i = b.input((sym("n"),), "int64", name="i")
    if right_is_lookup:
        right = b.emit(Gather(axis=0), b.const(E * 2), b.input((sym("n"),), "int64", name="j"))
    else:
        right = b.input((sym("n"), 4), "float32", name="x")
    joined = b.emit(Concat(axis=1), b.emit(Gather(axis=0), b.const(E), i), right)
    b.output(b.emit(MatMul(), joined, b.const(W2)))
    return b.build()


def test_a_linear_over_concatenated_lookups_becomes_a_sum_of_lookups():
    """concat(E[i], 2E[j]) @ W2 = (E @ W2[:4])[i] + (2E @ W2[4:])[j]: no multiply-adds left."""
    b = Builder()
    i = b.input((sym("n"),), "int64", name="i")
    j = b.input((sym("n"),), "int64", name="j")
    left = b.emit(Gather(axis=0), b.const(E @ W2[:4]), i)
    b.output(b.emit(Add(), left, b.emit(Gather(axis=0), b.const(E * 2 @ W2[4:]), j)))
    check_pass(fold_table_lookups, before=_linear_over_concat(True), expected=b.build())


def test_a_linear_over_a_lookup_and_an_activation_keeps_the_activations_part():
    b = Builder()
    i = b.input((sym("n"),), "int64", name="i")
    x = b.input((sym("n"), 4), "float32", name="x")
    left = b.emit(Gather(axis=0), b.const(E @ W2[:4]), i)
    b.output(b.emit(Add(), left, b.emit(MatMul(), x, b.const(W2[4:]))))
    check_pass(fold_table_lookups, before=_linear_over_concat(False), expected=b.build())


def test_a_linear_over_concatenated_lookups_over_the_limit_is_kept():
    g = _linear_over_concat(True)
    check_pass(fold_table_lookups, before=g, expected=g, max_elements=6 * 5 - 1)


def _two_lookups(same_index: bool) -> Graph:
    """tanh(gather(E, i)) * gather(E2, i or j), and gather(E, i) itself as a second output."""
    b = Builder()
    i = b.input((sym("n"),), "int64", name="i")
    j = i if same_index else b.input((sym("n"),), "int64", name="j")
    rows = b.emit(Gather(axis=0), b.const(E), i)
    other = b.emit(Gather(axis=0), b.const(E * 2), j)
    b.output(b.emit(Mul(), b.emit(Tanh(), rows), other), rows)
    return b.build()


def test_a_fold_that_would_add_a_table_is_not_made():
    """With other indices for E2, folding tanh(rows) (rows is also an output) would keep E's
    table and add tanh(E)'s, and the product cannot fold further: the graph stays."""
    g = _two_lookups(same_index=False)
    check_pass(fold_table_lookups, before=g, expected=g)


def test_a_lookup_read_twice_folds_when_no_table_is_added():
    """With the same indices the whole product folds: E (still an output) and the product's
    table are as many bytes as E and E2 were."""
    b = Builder()
    i = b.input((sym("n"),), "int64", name="i")
    rows = b.emit(Gather(axis=0), b.const(E), i)
    b.output(b.emit(Gather(axis=0), b.const(np.tanh(E) * (E * 2)), i), rows)
    check_pass(fold_table_lookups, before=_two_lookups(same_index=True), expected=b.build())


def test_elementwise_product_of_lookups_by_the_same_indices_folds():
    b = Builder()
    i = b.input((sym("n"),), "int64", name="i")
    rows = b.emit(Gather(axis=0), b.const(E), i)
    other = b.emit(Gather(axis=0), b.const(E * 2), i)
    b.output(b.emit(Mul(), b.emit(Tanh(), rows), other))
    check_pass(fold_table_lookups, before=b.build(), expected=_folded(np.tanh(E) * (E * 2)))


def test_a_treelstm_leaf_becomes_lookups():
    """Embedding, gates (a Linear), split, sigmoid/tanh and the products fold: c and
    h = sigmoid(o) * tanh(c) are both looked up (c is also an output: its table stays, and
    h's replaces sigmoid(o)'s)."""
    torch.manual_seed(0)
    leaf = LeafCell(hidden=16, vocab=40).eval()
    tokens = torch.tensor([[3], [39], [0], [7]])
    compiled = ember.compile(leaf, [tokens], cache=False)
    ops = {type(n.op).__name__ for n in compiled.programs[0].graph.nodes}
    assert ops == {"Gather"}
    with torch.no_grad():
        want = leaf(tokens)
    for got, expected in zip(compiled(tokens), want, strict=True):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
