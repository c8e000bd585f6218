"""matmul(x, const W) => int8_matmul(quantize_rows(x / s), pack(int8(W * s))): W8A8.

Weights: int8, one scale per output channel. Activations: int8, one scale per token (row),
computed at run time. With calibration activations and alpha > 0, SmoothQuant first migrates
activation outliers into the weights: s_k = max|X_k|^alpha / max|W_k|^(1 - alpha) per input
channel k (y = (X / s) (s W) exactly); 1 / s is applied inside the activation quantization
kernel (`quantize_rows`' multiplier). Matmuls whose K is not a multiple of 4 or N of 16 (the VNNI tile) stay float32.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ember.ir import Builder, Graph, Value, rewrite
from ember.ir.ops import Int8MatMul, QuantizeRows
from ember.ir.ops.quant_pack import pack_vnni_int8, quantize_symmetric
from ember.passes._match import linear_rule
from ember.passes.registry import graph_pass

__all__ = ["quantize_w8a8", "smooth_scales"]


def smooth_scales(x_absmax: np.ndarray, w: np.ndarray, alpha: float) -> np.ndarray:
    """SmoothQuant's per-input-channel scales s (W[K, N] is scaled by s along K)."""
    w_absmax = np.maximum(np.abs(w).max(axis=1), 1e-5)
    s = np.maximum(x_absmax, 1e-5) ** alpha / w_absmax ** (1 - alpha)
    return np.clip(s, 1e-4, 1e4).astype(np.float32)


def emit_w8a8(b: Builder, x: Value, w: np.ndarray, *multiplier: Value) -> Value:
    """int8_matmul of x[M, K] (times `multiplier` per column) and the float weight w[K, N]."""
    q, scale = quantize_symmetric(w, 8, axis=0)
    comp = 128 * q.astype(np.int32).sum(axis=0, dtype=np.int32)
    xq, xs = b.emit_multi(QuantizeRows(bits=8), x, *multiplier)
    return b.emit(
        Int8MatMul(), xq, xs, b.const(pack_vnni_int8(q)), b.const(scale[0]), b.const(comp)
    )


@graph_pass("quantize-w8a8")
def quantize_w8a8(
    g: Graph, *, alpha: float = 0.5, activations: Mapping[Value, np.ndarray] | None = None
) -> Graph:
    """W8A8 for every eligible matmul; `activations` maps a weight Value to calibration rows
    of its input X[rows, K] (SmoothQuant needs them; without them alpha is ignored)."""

    def rewrite_linear(b: Builder, x: Value, w: np.ndarray, key: Value) -> Value | None:
        k, n = w.shape
        if k % 4 or n % 16:
            return None
        samples = None if activations is None else activations.get(key)
        if samples is None or alpha <= 0:
            return emit_w8a8(b, x, w)
        s = smooth_scales(np.abs(samples).max(axis=0), w, alpha)
        return emit_w8a8(b, x, w * s[:, None], b.const(1 / s))

    return rewrite(g, linear_rule(rewrite_linear))
