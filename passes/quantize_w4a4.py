"""matmul(x, const W) => int4_group_matmul(x[:, normal]) + int8_matmul(x[:, outliers]): Atom W4A4.

method="atom" (needs calibration activations X): input channels are reordered offline by their
activation magnitude max|X_k|; the `outliers` largest keep 8 bits (per-token int8 activations,
per-channel int8 weights, `int8_matmul`) and the rest are 4-bit with groups of `group_size`
channels: per token and group for activations (dynamic), per output channel and group for
weights, integer products summed per group and dequantized per group in the kernel
(`int4_group_matmul`). The matching weight rows are permuted the same way, so the result is
the same matmul. method="rtn" quantizes every channel to 4 bits in its original order.

At most half of the channels keep 8 bits (a multiple of 4: the VNNI step), so models narrower
than 2 * outliers are still quantized. When the 4-bit channels are not a whole number of groups,
the last group is padded with zero activations and zero weights (which change neither the
group's scales nor the result). Matmuls whose N is not a multiple of 16 stay float32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from ember.ir import Builder, Graph, Value, rewrite
from ember.ir.ops import BINARY_OPS, Gather, Int4GroupMatMul, Int8MatMul, Pad, QuantizeRows, Slice
from ember.ir.ops.quant_pack import pack_vnni_int4, pack_vnni_int8, quantize_symmetric
from ember.passes._match import ColumnTransform, column_edits, linear_rule, shared_linear_inputs
from ember.passes.registry import graph_pass

__all__ = ["fold_atom_order", "quantize_w4a4"]

# (x, selected columns, bits, group size) => (q, scales): matmuls reading the same activations
# (q, k, v) share one reordering and one dynamic quantization
Quantized = dict[tuple[Value, bytes, int, int], tuple[Value, Value]]


def _quantized(
    b: Builder, x: Value, columns: np.ndarray, bits: int, group: int, memo: Quantized
) -> tuple[Value, Value]:
    """quantize_rows(x[:, columns], zero-padded to whole groups), once per distinct request."""
    key = (x, columns.tobytes(), bits, group)
    if key not in memo:
        k = x.type.shape[1]
        start = int(columns[0]) if len(columns) else 0
        if np.array_equal(columns, np.arange(k)):
            selected = x
        elif np.array_equal(columns, np.arange(start, start + len(columns))):
            selected = b.emit(Slice((1,), (start,), (start + len(columns),), (1,)), x)
        else:
            selected = b.emit(Gather(axis=1), x, b.const(columns))
        pad = -len(columns) % (group or 1)
        if pad:
            selected = b.emit(Pad((0, 0, 0, pad)), selected)
        memo[key] = b.emit_multi(QuantizeRows(bits=bits, group_size=group), selected)
    return memo[key]


def _int4_part(b: Builder, xq: Value, xs: Value, w: np.ndarray, group_size: int) -> Value:
    pad = -w.shape[0] % group_size
    w = np.concatenate([w, np.zeros((pad, w.shape[1]), w.dtype)])
    k, n = w.shape
    grouped = w.reshape(k // group_size, group_size, n)
    q, scale = quantize_symmetric(grouped, 4, axis=1)  # levels -7..7, scale [groups, 1, N]
    comp = 8 * q.astype(np.int32).sum(axis=1, dtype=np.int32)
    packed = pack_vnni_int4(q.reshape(k, n))
    return b.emit(
        Int4GroupMatMul(group_size=group_size),
        xq,
        xs,
        b.const(packed),
        b.const(scale[:, 0]),
        b.const(comp),
    )


def _int8_part(b: Builder, xq: Value, xs: Value, w: np.ndarray) -> Value:
    q, scale = quantize_symmetric(w, 8, axis=0)
    comp = 128 * q.astype(np.int32).sum(axis=0, dtype=np.int32)
    return b.emit(
        Int8MatMul(), xq, xs, b.const(pack_vnni_int8(q)), b.const(scale[0]), b.const(comp)
    )


def _order(samples: np.ndarray) -> np.ndarray:
    """Channels by increasing activation magnitude: the outliers last."""
    return np.argsort(np.abs(samples).max(axis=0), kind="stable").astype(np.int64)


def fold_atom_order(
    g: Graph, activations: Mapping[Value, np.ndarray]
) -> tuple[Graph, dict[Value, np.ndarray]]:
    """Atom's channel reordering folded into the ops producing each activation when they can
    absorb it (passes/_match.py: a previous linear's weight columns, through SiLU and
    the gating product). Returns g with those constants permuted and the order per folded
    matmul's weight Value (the activation it reads arrives reordered)."""
    folded: dict[Value, np.ndarray] = {}
    for x, sites in reversed(shared_linear_inputs(g).items()):
        samples = activations.get(sites[0][0].inputs[1])
        if samples is None or any(w.shape[1] % 16 for _, w in sites):
            continue
        order = _order(samples)
        edits = column_edits(g, x, ColumnTransform(perm=order))
        if edits is None:
            continue
        g = dataclasses.replace(g, consts={**g.consts, **edits})
        folded.update((node.inputs[1], order) for node, _ in sites)
    return g, folded


@graph_pass("quantize-w4a4")
def quantize_w4a4(
    g: Graph,
    *,
    group_size: int = 128,
    outliers: int = 128,
    method: str = "atom",
    activations: Mapping[Value, np.ndarray] | None = None,
) -> Graph:
    """W4A4 for every eligible matmul; `activations` maps a weight Value to calibration rows of
    its input X[rows, K] (Atom's reordering needs them; without them it is round-to-nearest)."""
    folded: dict[Value, np.ndarray] = {}
    if method == "atom" and activations:
        g, folded = fold_atom_order(g, activations)
    memo: Quantized = {}

    def rewrite_linear(b: Builder, x: Value, w: np.ndarray, key: Value) -> Value | None:
        k, n = w.shape
        samples = None if activations is None else activations.get(key)
        kept = min(outliers, k // 2) // 4 * 4 if method == "atom" and samples is not None else 0
        if n % 16:
            return None
        channels = np.arange(k)
        order = folded.get(key)
        if order is not None:  # x already arrives reordered
            w = w[order]
        elif kept:  # reorder at run time: the gathers below
            channels = _order(samples)
        normal = channels[: k - kept]
        y = _int4_part(b, *_quantized(b, x, normal, 4, group_size, memo), w[normal], group_size)
        if not kept:
            return y
        outlier = channels[k - kept :]
        int8 = _int8_part(b, *_quantized(b, x, outlier, 8, 0, memo), w[outlier])
        return b.emit(BINARY_OPS["add"](), y, int8)

    return rewrite(g, linear_rule(rewrite_linear))
