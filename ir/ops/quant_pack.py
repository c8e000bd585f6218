"""Numpy quantizers and the packed weight layouts the quantized matmul ops read.

Layouts (each op's docstring names the one it takes):

- VNNI int8: w[K, N] => b[N / 16, K / 4, 16, 4] with b[n // 16, k // 4, n % 16, k % 4] = w[k, n]:
  one 64-byte row of 16 columns x 4 reduction steps is exactly one `vpdpbusd` operand.
- VNNI int4: the same layout with two int4 values per byte along the last axis
  ([N / 16, K / 4, 16, 2], low nibble first), values in [-8, 7] as two's-complement nibbles.
- Panel int4: w[K, N] => p[N / 16, K / 2, 16], p[n // 16, k // 2, n % 16] holds rows k (low nibble)
  and k + 1 (high nibble) of column n, values in [0, 15]: 16 columns share a vector register.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "dequantize_rows",
    "pack_int4_panels",
    "pack_vnni_int4",
    "pack_vnni_int8",
    "quantize_rows",
    "quantize_symmetric",
    "unpack_int4_panels",
    "unpack_vnni_int4",
    "unpack_vnni_int8",
]

LANES = 16  # output columns per vector register (int32 or float32 on AVX-512)
STEP = 4  # reduction steps per vpdpbusd lane


def quantize_symmetric(
    w: np.ndarray, bits: int, axis: int | tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Round-to-nearest symmetric quantization: w ~= q * scale, q in [-(2^(b-1)-1), 2^(b-1)-1].

    `scale` is the absmax over `axis` (kept as size-1 dims) divided by the largest level.
    """
    levels = 2 ** (bits - 1) - 1
    scale = np.maximum(np.abs(w).max(axis=axis, keepdims=True), 1e-8) / levels
    q = np.clip(np.rint(w / scale), -levels, levels).astype(np.int8)
    return q, scale.astype(np.float32)


def quantize_rows(x: np.ndarray, bits: int, group_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic activation quantization of x[M, K]: per row (group_size 0) or per row and group.

    Returns q uint8[M, K] holding the signed level plus 2^(bits-1) (VNNI multiplies unsigned by
    signed bytes) and scale float32[M, groups].
    """
    m, k = x.shape
    group = group_size or k
    grouped = x.reshape(m, k // group, group).astype(np.float32)
    q, scale = quantize_symmetric(grouped, bits, axis=2)
    offset = q.astype(np.int32) + 2 ** (bits - 1)
    return offset.reshape(m, k).astype(np.uint8), scale.reshape(m, k // group)


def dequantize_rows(q: np.ndarray, scale: np.ndarray, bits: int) -> np.ndarray:
    """The inverse of `quantize_rows` (up to rounding)."""
    m, k = q.shape
    groups = scale.shape[1]
    signed = q.astype(np.float32) - 2 ** (bits - 1)
    return (signed.reshape(m, groups, k // groups) * scale[:, :, None]).reshape(m, k)


def pack_vnni_int8(w: np.ndarray) -> np.ndarray:
    """int8 w[K, N] => [N / 16, K / 4, 16, 4] (see the module docstring)."""
    k, n = w.shape
    return np.ascontiguousarray(
        w.reshape(k // STEP, STEP, n // LANES, LANES).transpose(2, 0, 3, 1), dtype=np.int8
    )


def unpack_vnni_int8(b: np.ndarray) -> np.ndarray:
    """The inverse of `pack_vnni_int8`."""
    panels, steps, lanes, step = b.shape
    return b.transpose(1, 3, 0, 2).reshape(steps * step, panels * lanes)


def pack_vnni_int4(w: np.ndarray) -> np.ndarray:
    """int4 values w[K, N] in [-8, 7] => uint8 [N / 16, K / 4, 16, 2], two per byte."""
    b = pack_vnni_int8(w).astype(np.uint8) & 0xF
    return np.ascontiguousarray(b[..., 0::2] | (b[..., 1::2] << 4))


def unpack_vnni_int4(packed: np.ndarray) -> np.ndarray:
    """The inverse of `pack_vnni_int4`: int8 w[K, N]."""
    low = (packed & 0xF).astype(np.int8)
    high = (packed >> 4).astype(np.int8)
    nibbles = np.stack([low, high], axis=-1).reshape(*packed.shape[:-1], 4)
    signed = np.where(nibbles >= 8, nibbles - 16, nibbles).astype(np.int8)
    return unpack_vnni_int8(signed)


def pack_int4_panels(q: np.ndarray) -> np.ndarray:
    """uint4 values q[K, N] in [0, 15] => uint8 [N / 16, K / 2, 16] (see the module docstring)."""
    k, n = q.shape
    panels = q.astype(np.uint8).reshape(k // 2, 2, n // LANES, LANES).transpose(2, 0, 3, 1)
    return np.ascontiguousarray(panels[..., 0] | (panels[..., 1] << 4))


def unpack_int4_panels(p: np.ndarray) -> np.ndarray:
    """The inverse of `pack_int4_panels`: uint8 q[K, N] in [0, 15]."""
    panels, pairs, lanes = p.shape
    both = np.stack([p & 0xF, p >> 4], axis=-1)  # [N/16, K/2, 16, 2]
    return both.transpose(1, 3, 0, 2).reshape(pairs * 2, panels * lanes)
