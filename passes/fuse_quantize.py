"""producer => [gather | slice] => [pad] => quantize_rows  ==>  fused_quantize_rows (one op).

The quantization passes leave dynamic activation quantization as a kernel of its own
(`quantize_rows`) that re-reads the float activation its producer wrote; TVM's FuseOps cannot
merge them (both reduce over the row). This pass replaces the producer and every quantization
reading it with one `fused_quantize_rows` (ir/ops/quant_fused.py), whose kernel computes each
row of the activation and all its quantizations without writing the float activation out.

Producers: an RMSNorm as frontends decompose it, gamma * (x * rsqrt(mean(x * x) + eps)) with
gamma a constant vector (Llama); a `layer_norm` over the last axis; silu(gate) * up (Llama's
MLP, before down_proj; Atom's reordering arrives folded into gate and up: column ranges, no
gather). Between producer and `quantize_rows` (optionally with SmoothQuant's
multiplier) may sit a flattening reshape, a column gather or slice (Atom's reordering and its
int8 outlier channels) and a zero pad of the columns (Atom's int4 groups). A producer is fused
only when every one of its users is such a chain: otherwise its output is written anyway.
"""

from __future__ import annotations

import numpy as np

from ember.ir import Builder, Graph, Node, Value, rewrite
from ember.ir.ops import (
    FusedQuantizeRows,
    Gather,
    LayerNorm,
    Pad,
    QuantHead,
    QuantizeRows,
    Reshape,
    Slice,
)
from ember.passes.registry import graph_pass

__all__ = ["fuse_quantize"]


class _Chain:
    """One quantize_rows node reading a producer's output: its head, extra inputs, nodes."""

    def __init__(self, quantize: Node, head: QuantHead, extra: list[Value], nodes: list[Node]):
        self.quantize, self.head, self.extra, self.nodes = quantize, head, extra, nodes


@graph_pass("fuse-quantize")
def fuse_quantize(g: Graph) -> Graph:
    """Fuse every activation producer (module docstring) into the `quantize_rows` reading it."""
    chains: dict[Value, list[_Chain]] = {}
    for node in g.nodes:
        if isinstance(node.op, QuantizeRows):
            found = _chain(g, node)
            if found is not None:
                chains.setdefault(found[0], []).append(found[1])
    groups: dict[Value, tuple[tuple[str, float, list[Value]], list[_Chain]]] = {}
    for y, group in chains.items():
        producer = _producer(g, y)
        gathers = any(c.head.gathered for c in group)
        if producer is None or (gathers and producer[0] == "silu_mul"):
            continue  # silu_mul reads its heads' columns from one row block: ranges only
        if _only_chains(g, y, group):
            groups[group[0].quantize.outputs[0]] = (producer, group)
    if not groups:
        return g
    fused: dict[Value, tuple[Value, ...]] = {}  # later chains' quantize outputs => fused outputs

    def rule(b: Builder, node: Node) -> tuple[Value, ...] | None:
        key = node.outputs[0]
        if key in fused:
            return fused.pop(key)
        if key not in groups:
            return None
        (name, eps, inputs), group = groups[key]
        k = inputs[0].type.shape[-1]
        rows = [_as_rows(b, g, v, k) if i == 0 or name == "silu_mul" else v
                for i, v in enumerate(inputs)]  # fmt: skip
        op = FusedQuantizeRows(name, eps, tuple(c.head for c in group))
        outputs = b.emit_multi(op, *rows, *(v for c in group for v in c.extra), loc=node.loc)
        for i, c in enumerate(group[1:], 1):
            fused[c.quantize.outputs[0]] = outputs[2 * i : 2 * i + 2]
        return outputs[:2]

    return rewrite(g, rule)


def _chain(g: Graph, quantize: Node) -> tuple[Value, _Chain] | None:
    """(the producer's output y, the chain) for quantize_rows(pad(select(reshape(y))))."""
    op: QuantizeRows = quantize.op  # type: ignore[assignment]
    v, nodes = quantize.inputs[0], [quantize]
    extra = list(quantize.inputs[1:])
    if any(m not in g.consts for m in extra):
        return None
    node = g.producer(v)
    pad = 0
    if node is not None and isinstance(node.op, Pad):
        p = node.op
        if p.mode != "constant" or p.value != 0 or tuple(p.pads[:3]) != (0, 0, 0):
            return None
        pad, v, nodes = int(p.pads[3]), node.inputs[0], [*nodes, node]
        node = g.producer(v)
    k = v.type.shape[-1]
    start, width, gathered = 0, k, False
    if node is not None and isinstance(node.op, Gather) and node.op.axis == 1:
        if node.inputs[1] not in g.consts or node.inputs[1].type.rank != 1:
            return None
        extra.insert(0, node.inputs[1])
        width, gathered = int(node.inputs[1].type.shape[0]), True
        v, nodes = node.inputs[0], [*nodes, node]
    elif node is not None and isinstance(node.op, Slice):
        s = node.op
        if tuple(s.axes) != (1,) or tuple(s.steps) != (1,):
            return None
        start, width = int(s.starts[0]), int(s.stops[0]) - int(s.starts[0])
        v, nodes = node.inputs[0], [*nodes, node]
    node = g.producer(v)
    if node is not None and isinstance(node.op, Reshape) and v.type.rank == 2:
        if node.inputs[0].type.shape[-1] != v.type.shape[-1]:
            return None
        v, nodes = node.inputs[0], [*nodes, node]
    if not isinstance(v.type.shape[-1], int):
        return None
    head = QuantHead(op.bits, op.group_size, start, width, pad, gathered, bool(quantize.inputs[1:]))
    return v, _Chain(quantize, head, extra, nodes)


def _only_chains(g: Graph, y: Value, group: list[_Chain]) -> bool:
    """Whether y and every value between it and the quantize nodes feed only these chains."""
    if y in g.outputs:
        return False
    inside = {n for c in group for n in c.nodes}
    values = [y, *(n.outputs[0] for n in inside if not isinstance(n.op, QuantizeRows))]
    return all(user in inside for v in values for user in g.users.get(v, []))


def _producer(g: Graph, y: Value) -> tuple[str, float, list[Value]] | None:
    """(producer name, eps, its inputs) when y is an RMSNorm, LayerNorm or SiLU gating."""
    node = g.producer(y)
    if node is None:
        return None
    if isinstance(node.op, LayerNorm):
        ok = node.op.axis in (-1, y.type.rank - 1)
        return ("layer_norm", node.op.eps, list(node.inputs)) if ok else None
    if node.op.name != "mul":
        return None
    for a, other in (node.inputs, node.inputs[::-1]):
        silu = g.producer(a)
        if silu is not None and silu.op.name == "silu" and other.type == a.type == y.type:
            return "silu_mul", 0.0, [silu.inputs[0], other]
        if a in g.consts and tuple(a.type.shape) == (y.type.shape[-1],):
            found = _rms(g, other)
            if found is not None:
                return "rms_norm", found[1], [found[0], a]
    return None


def _rms(g: Graph, v: Value) -> tuple[Value, float] | None:
    """(x, eps) when v = x * rsqrt(reduce_mean(x * x, last axis, keepdims) + eps)."""
    node = g.producer(v)
    if node is None or node.op.name != "mul":
        return None
    for x, r in (node.inputs, node.inputs[::-1]):
        rsqrt = g.producer(r)
        add = rsqrt and rsqrt.op.name == "rsqrt" and g.producer(rsqrt.inputs[0])
        if not add or add.op.name != "add":
            continue
        for mean, eps in (add.inputs, add.inputs[::-1]):
            reduce = g.producer(mean)
            if eps not in g.consts or g.consts[eps].size != 1 or reduce is None:
                continue
            square = g.producer(reduce.inputs[0])
            last = (-1, x.type.rank - 1)
            if (
                reduce.op.name == "reduce_mean"
                and len(reduce.op.axes) == 1
                and reduce.op.axes[0] in last
                and reduce.op.keepdims
                and square is not None
                and square.op.name == "mul"
                and tuple(square.inputs) == (x, x)
                and x.type.dtype == v.type.dtype
            ):
                return x, float(np.asarray(g.consts[eps]).reshape(()))
    return None


def _as_rows(b: Builder, g: Graph, v: Value, k: int) -> Value:
    """v as [M, K]: itself, the [M, K] value it was reshaped from, or a new reshape."""
    if v.type.rank == 2:
        return v
    node = g.producer(v)
    if node is not None and isinstance(node.op, Reshape):
        source = node.inputs[0]
        if source.type.rank == 2 and source.type.shape[-1] == k:
            return source
    return b.emit(Reshape((-1, k)), v)
