"""Matchers shared by passes: `linear_weight` finds `matmul(x, constant weight)` sites."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ember.ir import Builder, Node, Value
from ember.ir.ops import MatMul, Reshape, Transpose
from ember.ir.types import DType

__all__ = ["linear_rule", "linear_weight"]

# (builder, x as [M, K], weight [K, N], the weight's Value) -> y [M, N], or None to keep the node
LinearRewrite = Callable[[Builder, Value, np.ndarray, Value], "Value | None"]


def linear_weight(b: Builder, node: Node) -> np.ndarray | None:
    """W[K, N] when `node` is matmul(x[..., K], W) with W a float32 constant or the transpose
    of one (PyTorch's Linear); None otherwise."""
    if not isinstance(node.op, MatMul):
        return None
    w = node.inputs[1]
    if w.type.rank != 2 or w.type.dtype is not DType.float32:
        return None
    array = b.const_value(w)
    if array is not None:
        return array
    producer = b.producer(w)
    if producer is not None and isinstance(producer.op, Transpose):
        source = b.const_value(producer.inputs[0])
        return None if source is None else source.T
    return None


def linear_rule(rewrite_linear: LinearRewrite) -> Callable[[Builder, Node], Value | None]:
    """A `rewrite` rule that flattens x[..., K] to [M, K], calls `rewrite_linear` on each
    matmul with a constant weight, and restores the leading dims of its [M, N] result."""

    def rule(b: Builder, node: Node) -> Value | None:
        w = linear_weight(b, node)
        if w is None:
            return None
        x = node.inputs[0]
        k = x.type.shape[-1]
        rows = b.emit(Reshape((-1, k)), x, loc=node.loc) if x.type.rank != 2 else x
        y = rewrite_linear(b, rows, w, node.inputs[1])
        if y is None:
            return None
        if x.type.rank == 2:
            return y
        return b.emit(Reshape((*x.type.shape[:-1], w.shape[1])), y, loc=node.loc)

    return rule
