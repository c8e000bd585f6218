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

from collections.abc import Mapping

import numpy as np

from ember.ir import Builder, Graph, Value, rewrite
from ember.ir.ops import BINARY_OPS, Gather, Int4GroupMatMul, Int8MatMul, Pad, QuantizeRows
from ember.ir.ops.quant_pack import pack_vnni_int4, pack_vnni_int8, quantize_symmetric
from ember.passes._match import linear_rule
from ember.passes.registry import graph_pass

__all__ = ["quantize_w4a4"]


def _int4_part(b: Builder, x: Value, w: np.ndarray, group_size: int) -> Value:
    pad = -w.shape[0] % group_size
    if pad:
        x = b.emit(Pad((0, 0, 0, pad)), x)
        w = np.concatenate([w, np.zeros((pad, w.shape[1]), w.dtype)])
    k, n = w.shape
    grouped = w.reshape(k // group_size, group_size, n)
    q, scale = quantize_symmetric(grouped, 4, axis=1)  # levels -7..7, scale [groups, 1, N]
    comp = 8 * q.astype(np.int32).sum(axis=1, dtype=np.int32)
    xq, xs = b.emit_multi(QuantizeRows(bits=4, group_size=group_size), x)
    packed = pack_vnni_int4(q.reshape(k, n))
    return b.emit(
        Int4GroupMatMul(group_size=group_size),
        xq,
        xs,
        b.const(packed),
        b.const(scale[:, 0]),
        b.const(comp),
    )


def _int8_part(b: Builder, x: Value, w: np.ndarray) -> Value:
    q, scale = quantize_symmetric(w, 8, axis=0)
    comp = 128 * q.astype(np.int32).sum(axis=0, dtype=np.int32)
    xq, xs = b.emit_multi(QuantizeRows(bits=8), x)
    return b.emit(
        Int8MatMul(), xq, xs, b.const(pack_vnni_int8(q)), b.const(scale[0]), b.const(comp)
    )


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

    def rewrite_linear(b: Builder, x: Value, w: np.ndarray, key: Value) -> Value | None:
        k, n = w.shape
        samples = None if activations is None else activations.get(key)
        kept = min(outliers, k // 2) // 4 * 4 if method == "atom" and samples is not None else 0
        if n % 16:
            return None
        if not kept:
            return _int4_part(b, x, w, group_size)
        order = np.argsort(np.abs(samples).max(axis=0), kind="stable").astype(np.int64)
        normal, outlier = order[: k - kept], order[k - kept :]
        x_normal = b.emit(Gather(axis=1), x, b.const(normal))
        x_outlier = b.emit(Gather(axis=1), x, b.const(outlier))
        y = _int4_part(b, x_normal, w[normal], group_size)
        return b.emit(BINARY_OPS["add"](), y, _int8_part(b, x_outlier, w[outlier]))

    return rewrite(g, linear_rule(rewrite_linear))
