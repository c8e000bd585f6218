"""matmul(x, const W) => int4_matmul(x / s, pack(uint4(W * s))): weight-only 4-bit (W4A16).

Groups of `group_size` input channels share a scale and zero point per output channel
(asymmetric round-to-nearest). method="awq" (Activation-aware Weight Quantization, needs
calibration activations X) first searches per-input-channel scales s = mean|X|^a / max|W|^(1-a)
over a grid of a in [0, 1), keeping the one with the least output error ||XW - (X/s) Q(sW)||,
then per group and output channel a clipping ratio of the weight range with the least
||X_g (W_g - Q(W_g))||. 1 / s is folded into the constants of the ops producing X when they
can absorb it (passes/_match.py: a LayerNorm's or RMSNorm's gamma, a previous linear's
weight columns), with one s shared by all the matmuls reading X (q, k, v), searched on their
concatenated weights as AWQ does; otherwise it is a multiply that the kernel fuses into its
activation reads. method="rtn" is plain round-to-nearest. Matmuls whose K is not a multiple of group_size or N of
16 stay float32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from ember.ir import Builder, Graph, Value, rewrite
from ember.ir.ops import BINARY_OPS, Int4MatMul
from ember.ir.ops.quant_pack import pack_int4_panels
from ember.passes._match import (
    ColumnTransform,
    column_edits,
    linear_rule,
    linear_weight,
    shared_linear_inputs,
)
from ember.passes.registry import graph_pass

__all__ = ["awq_scales", "quantize_groups", "quantize_w4a16"]

ALPHA_GRID = np.arange(20) / 20
CLIP_RATIOS = np.linspace(1.0, 0.5, 11)
MAX_ROWS = 256  # calibration rows used by the searches


def quantize_groups(
    w: np.ndarray, group_size: int, clip: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric uint4 per (group, output channel): w ~= q * s - o. Returns q u8[K, N] in
    [0, 15], s and o f32[K / group_size, N]. `clip` [groups, N] shrinks each group's range."""
    k, n = w.shape
    grouped = w.reshape(k // group_size, group_size, n)
    low, high = grouped.min(axis=1), grouped.max(axis=1)
    if clip is not None:
        low, high = low * clip, high * clip
    scale = np.maximum(high - low, 1e-8) / 15
    zero = np.clip(np.rint(-low / scale), 0, 15)
    q = np.clip(np.rint(grouped / scale[:, None]) + zero[:, None], 0, 15)
    return (
        q.reshape(k, n).astype(np.uint8),
        scale.astype(np.float32),
        (zero * scale).astype(np.float32),
    )


def _dequantized(w: np.ndarray, group_size: int, clip: np.ndarray | None = None) -> np.ndarray:
    q, s, o = quantize_groups(w, group_size, clip)
    return q.astype(np.float32) * s.repeat(group_size, 0) - o.repeat(group_size, 0)


def awq_scales(x: np.ndarray, w: np.ndarray, group_size: int) -> np.ndarray:
    """The activation-aware per-input-channel scales with the least output error (grid search)."""
    x_mean = np.maximum(np.abs(x).mean(axis=0), 1e-6)
    w_max = np.maximum(np.abs(w).max(axis=1), 1e-6)
    reference = x @ w
    best, best_err = np.ones(w.shape[0], np.float32), np.inf
    for alpha in ALPHA_GRID:
        s = x_mean**alpha / w_max ** (1 - alpha)
        s = s / np.sqrt(s.max() * s.min())
        err = np.square(reference - (x / s) @ _dequantized(w * s[:, None], group_size)).mean()
        if err < best_err:
            best, best_err = s.astype(np.float32), err
    return best


def clip_ratios(x: np.ndarray, w: np.ndarray, group_size: int) -> np.ndarray:
    """Per (group, output channel), the range-shrink ratio with the least ||X_g (W_g - Q(W_g))||."""
    k, n = w.shape
    groups = k // group_size
    best = np.ones((groups, n), np.float32)
    best_err = np.full((groups, n), np.inf)
    xg = x.reshape(x.shape[0], groups, group_size)
    for ratio in CLIP_RATIOS:
        clip = np.full((groups, n), ratio, np.float32)
        diff = (w - _dequantized(w, group_size, clip)).reshape(groups, group_size, n)
        err = np.square(np.einsum("rgk,gkn->rgn", xg, diff)).sum(axis=0)
        better = err < best_err
        best[better], best_err[better] = ratio, err[better]
    return best


def fold_awq_scales(
    g: Graph, group_size: int, activations: Mapping[Value, np.ndarray]
) -> tuple[Graph, dict[Value, np.ndarray]]:
    """Joint AWQ scales for the matmuls sharing an input, folded upstream where possible.

    Returns g with the upstream constants divided by s, and s per folded matmul's weight Value
    (its weight still has to be multiplied by s). Inputs are visited last first, so a scale
    folded into a previous linear's weight is seen by that linear's own search.
    """
    folded: dict[Value, np.ndarray] = {}
    for x, sites in reversed(shared_linear_inputs(g).items()):
        samples = activations.get(sites[0][0].inputs[1])
        weights = [linear_weight(g, node) for node, _ in sites]
        if samples is None or not all(_eligible(w, group_size) for w in weights):
            continue
        samples = samples[:MAX_ROWS].astype(np.float32)
        s = awq_scales(samples, np.concatenate(weights, axis=1), group_size)
        edits = column_edits(g, x, ColumnTransform(scale=(1 / s).astype(np.float32)))
        if edits is None:
            continue
        g = dataclasses.replace(g, consts={**g.consts, **edits})
        folded.update((node.inputs[1], s) for node, _ in sites)
    return g, folded


def _eligible(w: np.ndarray | None, group_size: int) -> bool:
    return w is not None and w.shape[0] % group_size == 0 and w.shape[1] % 16 == 0


@graph_pass("quantize-w4a16")
def quantize_w4a16(
    g: Graph,
    *,
    group_size: int = 128,
    method: str = "awq",
    activations: Mapping[Value, np.ndarray] | None = None,
) -> Graph:
    """W4A16 for every eligible matmul; `activations` maps a weight Value to calibration rows of
    its input X[rows, K] (AWQ needs them; without them it falls back to round-to-nearest)."""

    folded: dict[Value, np.ndarray] = {}
    if method == "awq" and activations:
        g, folded = fold_awq_scales(g, group_size, activations)

    def rewrite_linear(b: Builder, x: Value, w: np.ndarray, key: Value) -> Value | None:
        if not _eligible(w, group_size):
            return None
        samples = None if activations is None else activations.get(key)
        clip = None
        s = folded.get(key)  # 1 / s already folded upstream: the weight must take s
        if s is None and method == "awq" and samples is not None:
            s = awq_scales(samples[:MAX_ROWS].astype(np.float32), w, group_size)
            x = b.emit(BINARY_OPS["mul"](), x, b.const((1 / s).astype(np.float32)))
        if s is not None:
            w = w * s[:, None]
        if s is not None and samples is not None:
            clip = clip_ratios(samples[:MAX_ROWS].astype(np.float32) / s, w, group_size)
        q, scale, offset = quantize_groups(w, group_size, clip)
        return b.emit(
            Int4MatMul(group_size=group_size),
            x,
            b.const(pack_int4_panels(q)),
            b.const(scale),
            b.const(offset),
        )

    return rewrite(g, linear_rule(rewrite_linear))
