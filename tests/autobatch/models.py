"""Small dynamic models for the autobatch tests: TreeLSTM over binary trees, an if/else on a
computed value, and a variable-length RNN. Each `*_program` returns (blocks..., fn)."""

from __future__ import annotations

import random
from typing import Any

import torch
from torch import nn

import ember.autobatch as ab
from examples.autobatch_models import Layer, LeafCell, NodeCell, RNNCell
from examples.autobatch_models import random_tree as _random_tree

VOCAB = 50


def random_tree(leaves: int, rng: random.Random) -> Any:
    """A random binary tree with `leaves` token leaves as nested pairs."""
    return _random_tree(leaves, rng, VOCAB)


def treelstm_program(hidden: int) -> Any:
    leaf, node = ab.block(LeafCell(hidden, VOCAB)), ab.block(NodeCell(hidden))

    def encode(tree: Any) -> Any:
        if isinstance(tree, int):
            return leaf(torch.tensor([tree]))
        return node(*encode(tree[0]), *encode(tree[1]))

    return leaf, node, encode


def branch_program(features: int, hidden: int) -> Any:
    """h = enc(x); if gate(h) > 0: two deep layers, else one shallow layer; then a head."""
    enc = ab.block(Layer(features, hidden), name="enc")
    gate = ab.block(nn.Linear(hidden, 1), name="gate")
    deep1 = ab.block(Layer(hidden, hidden), name="deep1")
    deep2 = ab.block(Layer(hidden, hidden), name="deep2")
    shallow = ab.block(Layer(hidden, hidden), name="shallow")
    head = ab.block(nn.Linear(hidden, 4), name="head")

    def classify(x: torch.Tensor) -> torch.Tensor:
        h = enc(x)
        if gate(h).item() > 0:  # noqa: SIM108  (an if statement: the ghost pass pads it)
            h = deep2(deep1(h))
        else:
            h = shallow(h)
        return head(h)

    return (enc, gate, deep1, deep2, shallow, head), classify


def rnn_program(features: int, hidden: int) -> Any:
    """A loop over a variable-length sequence from a shared initial state h0."""
    cell = ab.block(RNNCell(features, hidden), name="rnn")
    h0 = torch.zeros(1, hidden)

    def run_sequence(seq: torch.Tensor) -> torch.Tensor:
        h = h0
        for t in range(seq.shape[0]):
            h = cell(seq[t : t + 1], h)
        return h

    return cell, run_sequence
