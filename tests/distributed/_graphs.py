"""A tiny top-1 MoE layer written in ember ops (router, sort by expert, grouped_mm, unsort),
the shape transformers' grouped MoE layers are captured in, for fast pass and process tests."""

from __future__ import annotations

import numpy as np

from ember.ir import Builder, Graph, sym
from ember.ir.ops import Cast, CumSum, Gather, GroupedMm, Histc, MatMul, Relu, TopK
from ember.ir.ops.reduce import ArgMax

HIDDEN, FFN, EXPERTS = 8, 16, 4


def moe_graph(tokens: int | str = "tokens", seed: int = 0) -> Graph:
    """y = expert_{argmax(x @ router)}(x) row by row, expert(x) = relu(x @ w1[e]) @ w2[e]."""
    rng = np.random.default_rng(seed)
    b = Builder("tiny_moe")
    t = sym(tokens) if isinstance(tokens, str) else tokens
    x = b.input((t, HIDDEN), "float32", "x")
    router = b.const(rng.standard_normal((HIDDEN, EXPERTS)).astype(np.float32))
    w1 = b.const(rng.standard_normal((EXPERTS, HIDDEN, FFN)).astype(np.float32) / 3)
    w2 = b.const(rng.standard_normal((EXPERTS, FFN, HIDDEN)).astype(np.float32) / 4)
    expert = b.emit(ArgMax(axis=1), b.emit(MatMul(), x, router))
    keys = b.emit(Cast("float32"), expert)
    _, order = b.emit_multi(TopK(t, 0, largest=False), keys)
    rows = b.emit(Gather(0), x, order)
    counts = b.emit(Cast("int32"), b.emit(Histc(EXPERTS, 0.0, EXPERTS - 1.0), keys))
    offsets = b.emit(CumSum(axis=0), counts)
    hidden = b.emit(Relu(), b.emit(GroupedMm(), rows, w1, offsets))
    y = b.emit(GroupedMm(), hidden, w2, offsets)
    _, inverse = b.emit_multi(TopK(t, 0, largest=False), b.emit(Cast("float32"), order))
    b.output(b.emit(Gather(0), y, inverse), names=("y",))
    return b.build({tokens: (2, None)} if isinstance(tokens, str) else None)
