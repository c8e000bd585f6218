"""softmax(scale * q @ k^T + bias) @ v  =>  async_attention(q, bias, k parts, v parts; phi):
FlashDecoding++'s asynchronous softmax with a unified max (codegen/async_softmax.py).

The pattern is attention as exported from transformers models (ember.llm's `DecoderStep`):

    k = reshape(expand(reshape(concat(k_cache, k_new))))      # repeat_kv; concat optional
    s = reshape(matmul(reshape(q), reshape(transpose(k))))   # [B, H, N, T]
    p = softmax(s * scale + bias)
    o = matmul(reshape(p), reshape(expand(reshape(concat(v_cache, v_new)))))

The rewrite reads the cache and the new keys in place (the concatenation, the repeated heads and
the transposed copy of the keys are never built) and replaces the synchronized softmax (max, then
sum, then divide) by chunks of the sequence summing e^(x - phi) independently. phi is one
constant per attention site (layer), calibrated by `calibrate_phi` from the softmax inputs of
sample runs; rows where x - phi leaves the safe range are recomputed exactly by the kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ember.ir import Builder, Graph, Node, Value, interpret, rewrite
from ember.ir.ops import (
    Add,
    AsyncAttention,
    Concat,
    Expand,
    MatMul,
    Mul,
    Reshape,
    Softmax,
    Transpose,
    static_after_batch,
)
from ember.passes.registry import graph_pass

__all__ = ["MASKED", "AttentionSite", "async_softmax", "attention_sites", "calibrate_phi"]

MASKED = -1e30  # softmax inputs below this are masked positions (the bias is float32's min)


@dataclass(frozen=True)
class AttentionSite:
    """One matched attention: the matmul with v, the softmax input, q, bias, key/value parts."""

    output: Node
    scores: Value
    q: Value
    bias: Value | None
    scale: float
    keys: tuple[Value, ...]
    values: tuple[Value, ...]


def _source(view: Builder | Graph, v: Value, ops: tuple[type, ...]) -> tuple[Value, list[Node]]:
    """Walk back from v through producers of the types `ops` (transposes only of the last two
    axes of a rank-4 value); the first other value, and the nodes passed (from v backwards)."""
    passed = []
    while (node := view.producer(v)) is not None and isinstance(node.op, ops):
        if isinstance(node.op, Transpose) and node.op.perm != (0, 1, 3, 2):
            break
        passed.append(node)
        v = node.inputs[0]
    return v, passed


def _scalar(view: Builder | Graph, v: Value) -> float | None:
    array = view.consts.get(v)
    return float(array) if array is not None and array.size == 1 else None


def _parts(view: Builder | Graph, v: Value) -> tuple[Value, ...]:
    node = view.producer(v)
    concat = node is not None and isinstance(node.op, Concat) and node.op.axis in (2, -2)
    if concat and len(node.inputs) == 2:
        return node.inputs
    return (v,)


def _kv(view: Builder | Graph, v: Value, q: Value, transposed: bool) -> tuple[Value, ...] | None:
    """The parts [B, KVH, T_p, D] of keys/values read through repeat_kv (and k's transpose)."""
    ops = (Reshape, Expand, Transpose) if transposed else (Reshape, Expand)
    source, passed = _source(view, v, ops)
    transposes = [n for n in passed if isinstance(n.op, Transpose)]
    if len(transposes) != int(transposed) or source.type.rank != 4:
        return None
    b, h, _, d = q.type.shape
    kv_b, kv_h, _, kv_d = source.type.shape
    if (kv_b, kv_d) != (b, d) or int(h) % int(kv_h):
        return None
    for node in passed:  # repeat_kv: [B, KVH, T, D] -> [B, KVH, G, T, D] -> [B, H, T, D]
        if isinstance(node.op, Expand):
            shape = node.outputs[0].type.shape
            if len(shape) != 5 or shape[:2] != (kv_b, kv_h) or shape[3:] != source.type.shape[2:]:
                return None
    return _parts(view, source)


def _scaled(view: Builder | Graph, scores: Value) -> tuple[Node, float, Value | None] | None:
    """scores = mul(qk, scale) [+ bias]: (the matmul q @ k^T, scale, bias or None)."""
    x, bias = scores, None
    add = view.producer(x)
    if add is not None and isinstance(add.op, Add):
        for i in (0, 1):
            producer = view.producer(add.inputs[i])
            if producer is not None and isinstance(producer.op, Mul):
                x, bias = add.inputs[i], add.inputs[1 - i]
                break
    mul = view.producer(x)
    if mul is None or not isinstance(mul.op, Mul):
        return None
    scales = [s for a in mul.inputs if (s := _scalar(view, a)) is not None]
    logits = [a for a in mul.inputs if _scalar(view, a) is None]
    if len(scales) != 1 or len(logits) != 1:
        return None
    product = view.producer(_source(view, logits[0], (Reshape,))[0])
    if product is None or not isinstance(product.op, MatMul):
        return None
    return product, scales[0], bias


def match_site(view: Builder | Graph, node: Node) -> AttentionSite | None:
    """The attention whose final matmul (probabilities @ values) is `node`, or None."""
    if not isinstance(node.op, MatMul):
        return None
    soft = view.producer(_source(view, node.inputs[0], (Reshape,))[0])
    if soft is None or not isinstance(soft.op, Softmax) or soft.op.axis not in (3, -1):
        return None
    scores = soft.inputs[0]
    static = scores.type.rank == 4 and static_after_batch(scores.type)
    scaled = _scaled(view, scores) if static else None  # the batch may be symbolic
    if scaled is None:
        return None
    product, scale, bias = scaled
    q, _ = _source(view, product.inputs[0], (Reshape,))
    if q.type.rank != 4:
        return None
    keys = _kv(view, product.inputs[1], q, transposed=True)
    values = _kv(view, node.inputs[1], q, transposed=False)
    if keys is None or values is None or len(keys) != len(values):
        return None
    b, h, n, _ = q.type.shape
    total = sum(int(k.type.shape[2]) for k in keys)
    if bias is None:  # the rewrite adds a zero bias: its batch must be static
        bias_ok = isinstance(b, int)
    else:
        bias_ok = (
            bias.type.rank == 4
            and bias.type.shape[0] == b
            and bias.type.shape[1] in (1, h)
            and bias.type.shape[2:] == (n, total)
        )
    if scores.type.shape != (b, h, n, total) or not bias_ok:
        return None
    return AttentionSite(node, scores, q, bias, scale, keys, values)


def attention_sites(g: Graph) -> list[AttentionSite]:
    """Every attention the rewrite matches in `g`, in graph order (one per layer)."""
    return [site for node in g.nodes if (site := match_site(g, node)) is not None]


def calibrate_phi(g: Graph, samples: Sequence[Sequence[np.ndarray]]) -> tuple[float, ...]:
    """phi per attention site of `g`: the mean over rows of the row maxima of the softmax
    inputs (masked positions left out), from the reference interpreter run on each of
    `samples` (input lists)."""
    sites = attention_sites(g)
    if not sites:
        return ()
    b = Builder.like(g)
    for node in g.nodes:
        b.add_node(node)
    b.output(*(site.scores for site in sites))
    probe = b.build()
    maxima: list[list[np.ndarray]] = [[] for _ in sites]
    for inputs in samples:
        for found, scores in zip(maxima, interpret(probe, *inputs), strict=True):
            row_max = np.where(scores > MASKED, scores, -np.inf).max(axis=-1)
            found.append(row_max[np.isfinite(row_max)])
    return tuple(float(np.concatenate(found).mean()) if found else 0.0 for found in maxima)


@graph_pass("async-softmax")
def async_softmax(g: Graph, *, phi: Sequence[float] | float = 0.0, chunk: int = 256) -> Graph:
    """Rewrite every matched attention (module doc). `phi`: one value per site in graph order
    (`calibrate_phi`), or one for all; `chunk`: tokens per independent partial sum."""
    count = [0]

    def rule(b: Builder, node: Node) -> Value | None:
        site = match_site(b, node)
        if site is None:
            return None
        index, count[0] = count[0], count[0] + 1
        value = phi if isinstance(phi, int | float) else phi[index]
        bias = site.bias
        if bias is None:
            b_, _, n, t = site.scores.type.shape
            bias = b.const(np.zeros((int(b_), 1, int(n), int(t)), np.float32))
        op = AsyncAttention(scale=site.scale, phi=float(value), chunk=chunk, parts=len(site.keys))
        out = b.emit(op, site.q, bias, *site.keys, *site.values, loc=node.loc)
        return b.emit(Reshape(shape=node.outputs[0].type.shape), out, loc=node.loc)

    return rewrite(g, rule)
