"""Small dynamic models for the autobatch tests: TreeLSTM over binary trees, an if/else on a
computed value, and a variable-length RNN. Each `*_program` returns (blocks..., fn)."""

from __future__ import annotations

import random
from typing import Any

import torch
from torch import nn

import ember.autobatch as ab

VOCAB = 50


class LeafCell(nn.Module):
    """TreeLSTM leaf: embed a token, then the input/output/update gates."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, hidden)
        self.gates = nn.Linear(hidden, 3 * hidden)

    def forward(self, token: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        i, o, u = self.gates(self.emb(token)).chunk(3, -1)
        c = torch.sigmoid(i) * torch.tanh(u)
        return torch.sigmoid(o) * torch.tanh(c), c


class NodeCell(nn.Module):
    """Binary TreeLSTM node: gates from both children's h, one forget gate per child."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.gates = nn.Linear(2 * hidden, 5 * hidden)

    def forward(
        self, hl: torch.Tensor, cl: torch.Tensor, hr: torch.Tensor, cr: torch.Tensor
    ) -> Any:
        i, o, u, fl, fr = self.gates(torch.cat([hl, hr], -1)).chunk(5, -1)
        c = torch.sigmoid(i) * torch.tanh(u) + torch.sigmoid(fl) * cl + torch.sigmoid(fr) * cr
        return torch.sigmoid(o) * torch.tanh(c), c


def random_tree(leaves: int, rng: random.Random) -> Any:
    """A random binary tree with `leaves` token leaves (ints) as nested pairs."""
    if leaves == 1:
        return rng.randrange(VOCAB)
    left = rng.randint(1, leaves - 1)
    return (random_tree(left, rng), random_tree(leaves - left, rng))


def treelstm_program(hidden: int) -> Any:
    leaf, node = ab.block(LeafCell(hidden)), ab.block(NodeCell(hidden))

    def encode(tree: Any) -> Any:
        if isinstance(tree, int):
            return leaf(torch.tensor([tree]))
        return node(*encode(tree[0]), *encode(tree[1]))

    return leaf, node, encode


class Layer(nn.Module):
    """tanh(W x + b)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(x))


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


class RNNCell(nn.Module):
    """Elman cell: tanh(W [x, h] + b)."""

    def __init__(self, features: int, hidden: int) -> None:
        super().__init__()
        self.linear = nn.Linear(features + hidden, hidden)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(torch.cat([x, h], -1)))


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
