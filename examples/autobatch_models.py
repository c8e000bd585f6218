"""Cells of the dynamic models that `ember.autobatch` is tested and benchmarked on: a binary
TreeLSTM over random trees, a tanh layer (the if/else model) and an Elman RNN cell."""

from __future__ import annotations

import random
from typing import Any

import torch
from torch import nn


class LeafCell(nn.Module):
    """TreeLSTM leaf: embed a token, then the input/output/update gates."""

    def __init__(self, hidden: int, vocab: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, hidden)
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


class Layer(nn.Module):
    """tanh(W x + b)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(x))


class RNNCell(nn.Module):
    """Elman cell: tanh(W [x, h] + b)."""

    def __init__(self, features: int, hidden: int) -> None:
        super().__init__()
        self.linear = nn.Linear(features + hidden, hidden)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(torch.cat([x, h], -1)))


def random_tree(leaves: int, rng: random.Random, vocab: int) -> Any:
    """A random binary tree with `leaves` token leaves (ints below `vocab`) as nested pairs."""
    if leaves == 1:
        return rng.randrange(vocab)
    left = rng.randint(1, leaves - 1)
    return (random_tree(left, rng, vocab), random_tree(leaves - left, rng, vocab))
