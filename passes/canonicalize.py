"""No-op data movement => its input: reshape/expand to the same shape, identity transposes,
casts to the same dtype, full-range slices; reshape∘reshape => reshape; transpose∘transpose =>
one transpose."""

from __future__ import annotations

from collections.abc import Callable

import sympy

from ember.ir import Builder, Graph, Node, Value, rewrite
from ember.ir.ops import Cast, Expand, Reshape, Slice, Transpose
from ember.passes.registry import graph_pass


def _same_shape(a: Value, b: Value) -> bool:
    return len(a.type.shape) == len(b.type.shape) and all(
        sympy.simplify(sympy.sympify(x) - sympy.sympify(y)) == 0
        for x, y in zip(a.type.shape, b.type.shape, strict=True)
    )


def _reshape(b: Builder, node: Node) -> Value | None:
    (x,) = node.inputs
    (out,) = node.outputs
    if _same_shape(x, out):
        return x
    producer = b.producer(x)
    if producer is not None and isinstance(producer.op, Reshape):
        source = producer.inputs[0]
        return (
            source
            if _same_shape(source, out)
            else b.emit(Reshape(out.type.shape), source, loc=node.loc)
        )
    return None


def _transpose(b: Builder, node: Node) -> Value | None:
    assert isinstance(node.op, Transpose)
    (x,) = node.inputs
    perm = node.op.perm
    producer = b.producer(x)
    if producer is not None and isinstance(producer.op, Transpose):
        inner = producer.op.perm
        perm = tuple(inner[p] for p in perm)
        x = producer.inputs[0]
    if perm == tuple(range(len(perm))):
        return x
    return b.emit(Transpose(perm), x, loc=node.loc) if x is not node.inputs[0] else None


def _identity_if_same_type(b: Builder, node: Node) -> Value | None:
    (x,) = node.inputs
    return x if x.type == node.outputs[0].type else None


def _slice(b: Builder, node: Node) -> Value | None:
    return (
        node.inputs[0]
        if _same_shape(node.inputs[0], node.outputs[0]) and _is_forward(node)
        else None
    )


def _is_forward(node: Node) -> bool:
    op = node.op
    assert isinstance(op, Slice)
    return all(step == 1 and start == 0 for start, step in zip(op.starts, op.steps, strict=True))


_RULES: dict[type, Callable[[Builder, Node], Value | None]] = {
    Reshape: _reshape,
    Transpose: _transpose,
    Cast: _identity_if_same_type,
    Expand: _identity_if_same_type,
    Slice: _slice,
}


@graph_pass("canonicalize")
def canonicalize(g: Graph) -> Graph:
    def rule(b: Builder, node: Node) -> Value | None:
        fn = _RULES.get(type(node.op))
        return fn(b, node) if fn else None

    return rewrite(g, rule)
