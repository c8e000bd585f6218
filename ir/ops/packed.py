"""Matrix products over weights stored in a CPU-friendly packed layout: `packed_matmul`.

CPU codegen rewrites `matmul(x, const w)` into `packed_matmul(x, pack_panels(w))` so the weight
is repacked once at compile time instead of on every call (codegen/pack_weights.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ember.ir.op import Op, register_op
from ember.ir.ops._shapes import dims_equal
from ember.ir.types import TensorType

__all__ = ["PackedMatMul", "pack_panels", "unpack_panels"]


def pack_panels(w: np.ndarray, panel: int) -> np.ndarray:
    """w[K, N] => packed[N_pad / panel, K, panel] with packed[j // panel, k, j % panel] = w[k, j];
    N is zero-padded to whole panels."""
    k, n = w.shape
    padded = np.zeros((k, -(-n // panel) * panel), dtype=w.dtype)
    padded[:, :n] = w
    return np.ascontiguousarray(padded.reshape(k, -1, panel).transpose(1, 0, 2))


def unpack_panels(packed: np.ndarray, columns: int) -> np.ndarray:
    """The inverse of `pack_panels`: packed[N_pad / panel, K, panel] => w[K, columns]."""
    panels, k, panel = packed.shape
    return packed.transpose(1, 0, 2).reshape(k, panels * panel)[:, :columns]


@register_op
@dataclass(frozen=True)
class PackedMatMul(Op):
    """x @ w for x[..., M, K] and w given packed as [N_pad / panel, K, panel] (`pack_panels`);
    `columns` is N, the columns of w before padding."""

    name: ClassVar[str] = "packed_matmul"
    columns: int = 1

    def infer(self, x: TensorType, packed: TensorType) -> TensorType:
        if x.rank < 2 or packed.rank != 3 or not packed.is_static:
            raise self.error(
                f"expects x[..., M, K] and a static packed[N/panel, K, panel], got {x}, {packed}"
            )
        if x.dtype != packed.dtype:
            raise self.error(f"dtypes differ: {x} @ {packed}; insert a cast")
        if not dims_equal(x.shape[-1], packed.shape[1]):
            raise self.error(f"inner dims differ: {x} @ {packed}")
        panels, _, panel = (int(d) for d in packed.shape)
        if not (panels - 1) * panel < self.columns <= panels * panel:
            raise self.error(f"columns={self.columns} does not fit {panels} panels of {panel}")
        return TensorType((*x.shape[:-1], self.columns), x.dtype)

    def reference(self, x: np.ndarray, packed: np.ndarray) -> np.ndarray:
        w = unpack_panels(packed, self.columns)
        return np.matmul(x.astype(np.float64), w.astype(np.float64)).astype(x.dtype)

    def compute(self, x: Any, packed: Any) -> Any:
        from tvm import te, tirx

        panel = int(packed.shape[2])
        k = te.reduce_axis((0, x.shape[-1]), name="k")

        def body(*i: Any) -> Any:
            j = i[-1]
            w = packed(tirx.floordiv(j, panel), k, tirx.floormod(j, panel))
            return te.sum(x(*i[:-1], k) * w, axis=k)

        return te.compute((*x.shape[:-1], self.columns), body, name="matmul")
