"""`Int4PanelGroupMatMul`: W4A4 over the W4A16 weight bytes (QSPEC's draft kernel, ember.llm).

`int4_matmul` (W4A16) reads uint4 weights in the panel layout with per-group scales s and
offsets o = zero * s. This op reads the same three arrays, so one packed weight set serves a
float-activation path and an integer-activation path: with zero = rint(o / s) (an integer in
[0, 15]), w = (p - zero) * s, and the signed levels p - zero fit int8. Per group g of K,

    y[m, n] = sum_g (sum_{k in g} q[m, k] * (p[k, n] - zero[g, n]) - comp[g, n]) * xs[m, g] * s[g, n]

with q the activation levels from `quantize_rows` (offset by 8 for 4-bit groups, 128 for the
8-bit outlier groups) and comp[g, n] = offset_g * sum_{k in g} (p[k, n] - zero[g, n]) removing
that offset. The loop nest is `int4_group_matmul`'s (codegen/cpu_int8_gemm.py tensorizes it with
`vpdpbusd`): the panel is unpacked to int8 once per column tile, in the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ember.ir.op import Op, register_op
from ember.ir.ops._shapes import dims_equal
from ember.ir.ops.quant import group_gemm
from ember.ir.ops.quant_pack import LANES, STEP, unpack_int4_panels
from ember.ir.types import DType, TensorType

__all__ = ["Int4PanelGroupMatMul", "panel_levels"]


def panel_levels(p: np.ndarray, s: np.ndarray, o: np.ndarray, group_size: int) -> np.ndarray:
    """The signed weight levels p - rint(o / s), int8 [K, N] (numpy, for references and comp)."""
    zero = np.rint(o / s).astype(np.int16).repeat(group_size, 0)
    return (unpack_int4_panels(p).astype(np.int16) - zero).astype(np.int8)


@register_op
@dataclass(frozen=True)
class Int4PanelGroupMatMul(Op):
    """W4A4 on `int4_matmul`'s weights (module docstring).

    q u8[M, K], xs f32[M, K / group_size] (activations, `quantize_rows`); p u8[N / 16, K / 2, 16],
    s, o f32[K / group_size, N] (the W4A16 weight, `pack_int4_panels`); comp i32[groups, N].
    """

    name: ClassVar[str] = "int4_panel_group_matmul"
    group_size: int = 128

    def infer(self, *args: TensorType) -> TensorType:
        if len(args) != 6:
            raise self.error(f"takes 6 inputs (q, xs, p, s, o, comp), got {len(args)}")
        q, xs, p, s, o, comp = args
        if q.rank != 2 or q.dtype is not DType.uint8 or xs.rank != 2:
            raise self.error(f"expects q u8[M, K] and xs f32[M, groups], got {q}, {xs}")
        if p.rank != 3 or p.dtype is not DType.uint8 or int(p.shape[2]) != LANES:
            raise self.error(f"expects p u8[N/16, K/2, 16], got {p}")
        k, n = int(p.shape[1]) * 2, int(p.shape[0]) * LANES
        groups = k // self.group_size
        if k % self.group_size or self.group_size % STEP or not dims_equal(q.shape[1], k):
            raise self.error(f"K={k} must match q {q} and be a multiple of {self.group_size}")
        for name, t, dtype in (("s", s, DType.float32), ("o", o, DType.float32),
                               ("comp", comp, DType.int32)):  # fmt: skip
            if tuple(t.shape) != (groups, n) or t.dtype is not dtype:
                raise self.error(f"expects {name} {dtype.name}[{groups}, {n}], got {t}")
        return TensorType((q.shape[0], n), DType.float32)

    def reference(self, *args: np.ndarray) -> np.ndarray:
        q, xs, p, s, o, comp = args
        g = self.group_size
        w = panel_levels(p, s, o, g).astype(np.int64)
        out = np.zeros((q.shape[0], w.shape[1]), np.float32)
        for i in range(w.shape[0] // g):
            acc = q[:, i * g : (i + 1) * g].astype(np.int64) @ w[i * g : (i + 1) * g]
            out += (acc - comp[i]).astype(np.float32) * xs[:, i : i + 1] * s[i]
        return out

    def compute(self, *args: Any) -> Any:
        from tvm import te, tirx

        q, xs, p, s, o, comp = args
        g = self.group_size
        panels, pairs = int(p.shape[0]), int(p.shape[1])
        steps = pairs * 2 // STEP

        zero = te.compute(  # once per group and column, not per weight
            s.shape, lambda i, j: tirx.nearbyint(o[i, j] / s[i, j]).astype("int32"), name="zero"
        )

        def unpack(c: Any, st: Any, lane: Any, t: Any) -> Any:
            k = st * STEP + t
            nibble = (p[c, k // 2, lane] >> ((k % 2) * 4).astype("uint8")) & 15
            return (nibble.astype("int32") - zero[k // g, c * LANES + lane]).astype("int8")

        # [N/16, K/4, 16, 4]: the layout `vpdpbusd` reads, as int4_group_matmul's unpacked panel
        w = te.compute((panels, steps, LANES, STEP), unpack, name="unpack_weight")
        return group_gemm(q, xs, w, s, comp, g)
