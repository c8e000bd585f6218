"""Tiny graphs for the runtime tests."""

from __future__ import annotations

import numpy as np

from ember.ir import Builder, Graph, sym
from ember.ir.ops import Add, Exp, MatMul

WEIGHT = np.arange(16, dtype=np.float32).reshape(4, 4) / 10


def two_input_graph() -> Graph:
    """out = exp(x @ W), twice = x + y with x, y: float32[n, 4], n in [1, 64]."""
    b = Builder("tiny")
    n = sym("n")
    x = b.input((n, 4), "float32", name="x")
    y = b.input((n, 4), "float32", name="y")
    w = b.const(WEIGHT, name="w")
    b.output(b.emit(Exp(), b.emit(MatMul(), x, w)), b.emit(Add(), x, y), names=("out", "twice"))
    return b.build({"n": (1, 64)})
