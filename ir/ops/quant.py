"""Quantized ops: dynamic activation quantization and matmuls over packed low-bit weights.

The passes `quantize-w8a8`, `quantize-w4a16` and `quantize-w4a4` rewrite `matmul(x, const w)`
into these; weight layouts are defined in `quant_pack.py`. The computes are plain TE: the CPU
schedules (VNNI tensorization, in-register dequantization) are codegen's (`cpu_int8_gemm.py`,
`cpu_quant_gemm.py`), which recognize the loop structure written here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ember.ir.op import Op, register_op
from ember.ir.ops._shapes import dims_equal
from ember.ir.ops.quant_pack import (
    LANES,
    STEP,
    quantize_rows,
    unpack_int4_panels,
    unpack_vnni_int4,
    unpack_vnni_int8,
)
from ember.ir.types import DType, TensorType

__all__ = ["Int4GroupMatMul", "Int4MatMul", "Int8MatMul", "QuantizeRows"]

ROW_TILE = 8  # rows of the integer kernels' register tile (codegen/cpu_int8_gemm.py)


@register_op
@dataclass(frozen=True)
class QuantizeRows(Op):
    """x f32[M, K] => (q u8[M, K], scale f32[M, K / group_size]): symmetric round-to-nearest
    per row (group_size 0: one group) or per row and group of columns; q holds the signed level
    plus 2^(bits-1). Dynamic: scales come from the data at run time (per-token quantization).

    An optional second input m f32[K] multiplies x's columns first (SmoothQuant's 1 / s), so
    the smoothing is fused into the quantization kernel."""

    name: ClassVar[str] = "quantize_rows"
    bits: int = 8
    group_size: int = 0

    def infer(self, x: TensorType, *multiplier: TensorType) -> tuple[TensorType, TensorType]:
        if x.rank != 2 or x.dtype is not DType.float32 or not isinstance(x.shape[1], int):
            raise self.error(f"expects x f32[M, K] with a static K, got {x}")
        if multiplier and tuple(multiplier[0].shape) != (x.shape[1],):
            raise self.error(f"the multiplier must be f32[{x.shape[1]}], got {multiplier[0]}")
        if self.bits not in (4, 8):
            raise self.error(f"bits={self.bits}: only 4 and 8 are supported")
        k = x.shape[1]
        group = self.group_size or k
        if k % group:
            raise self.error(f"K={k} is not a multiple of group_size={self.group_size}")
        m = x.shape[0]
        return TensorType((m, k), DType.uint8), TensorType((m, k // group), DType.float32)

    def reference(self, x: np.ndarray, *multiplier: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if multiplier:
            x = x * multiplier[0]
        return quantize_rows(x, self.bits, self.group_size)

    def compute(self, source: Any, *multiplier: Any) -> list[Any]:
        from tvm import te, tirx

        m, k = source.shape
        if multiplier:
            x = te.compute((m, k), lambda i, j: source[i, j] * multiplier[0][j], name="smooth")
        else:
            x = source
        group = self.group_size or int(k)
        levels = float(2 ** (self.bits - 1) - 1)
        kk = te.reduce_axis((0, group), name="kk")
        absmax = te.compute(
            (m, int(k) // group),
            lambda i, g: te.max(te.abs(x[i, g * group + kk]), axis=kk),
            name="absmax",
        )
        scale = te.compute(
            absmax.shape, lambda i, g: te.max(absmax[i, g], 1e-8) / levels, name="scale"
        )

        def level(i: Any, j: Any) -> Any:
            r = tirx.nearbyint(x[i, j] / scale[i, j // group])
            clipped = te.min(te.max(r, -levels), levels)
            return (clipped + float(2 ** (self.bits - 1))).astype("uint8")

        return [te.compute((m, k), level, name="quantize"), scale]


@register_op
@dataclass(frozen=True)
class Int8MatMul(Op):
    """W8A8: y f32[M, N] = (sum_k q[m, k] * b[k, n] - comp[n]) * xs[m] * ws[n].

    q u8[M, K] from `quantize_rows(bits=8)`, xs f32[M, 1]; b the int8 weight in the VNNI layout
    [N / 16, K / 4, 16, 4]; ws f32[N] per-output-channel scales; comp i32[N] = 128 * sum_k b[k, n]
    removes q's offset. Lowers to `vpdpbusd` on AVX512-VNNI CPUs.
    """

    name: ClassVar[str] = "int8_matmul"

    def infer(self, *args: TensorType) -> TensorType:
        q, xs, b, ws, comp = _arity(self, args, 5)
        if q.rank != 2 or q.dtype is not DType.uint8 or xs.dtype is not DType.float32:
            raise self.error(f"expects q u8[M, K] and xs f32[M, 1], got {q}, {xs}")
        if b.rank != 4 or b.dtype is not DType.int8 or tuple(b.shape[2:]) != (LANES, STEP):
            raise self.error(f"expects b i8[N/16, K/4, 16, 4], got {b}")
        n = int(b.shape[0]) * LANES
        if not dims_equal(q.shape[1], int(b.shape[1]) * STEP) or tuple(ws.shape) != (n,):
            raise self.error(f"K or N differ: q {q}, b {b}, ws {ws}")
        if comp.dtype is not DType.int32 or tuple(comp.shape) != (n,):
            raise self.error(f"expects comp i32[{n}], got {comp}")
        return TensorType((q.shape[0], n), DType.float32)

    def reference(self, *args: np.ndarray) -> np.ndarray:
        q, xs, b, ws, comp = args
        acc = (q.astype(np.int64) @ unpack_vnni_int8(b).astype(np.int64)) - comp
        return (acc.astype(np.float32) * xs * ws).astype(np.float32)

    def compute(self, *args: Any) -> Any:
        from tvm import te

        q, xs, b, ws, comp = args
        k = te.reduce_axis((0, q.shape[1]), name="k")
        n = int(b.shape[0]) * LANES
        rows, row = _padded_rows(q.shape[0])
        acc = te.compute(
            (rows, n),
            lambda i, j: te.sum(
                q[row(i), k].astype("int32")
                * b[j // LANES, k // STEP, j % LANES, k % STEP].astype("int32"),
                axis=k,
            ),
            name="int8_gemm",
        )
        return te.compute(
            (q.shape[0], n),
            lambda i, j: (acc[i, j] - comp[j]).astype("float32") * xs[i, 0] * ws[j],
            name="dequantize",
        )


@register_op
@dataclass(frozen=True)
class Int4MatMul(Op):
    """W4A16 (weight-only): y f32[M, N] = x @ w with w[k, n] = p[k, n] * s[g, n] - o[g, n],
    g = k // group_size; p the uint4 weight packed two per byte as [N / 16, K / 2, 16]
    (`pack_int4_panels`); s, o f32[K / group_size, N] (o = zero point * scale). The dequantize
    runs inside the matmul kernel: only the packed bytes are read from memory."""

    name: ClassVar[str] = "int4_matmul"
    group_size: int = 128

    def infer(self, *args: TensorType) -> TensorType:
        x, p, s, o = _arity(self, args, 4)
        if x.rank != 2 or x.dtype is not DType.float32:
            raise self.error(f"expects x f32[M, K], got {x}")
        if p.rank != 3 or p.dtype is not DType.uint8 or int(p.shape[2]) != LANES:
            raise self.error(f"expects p u8[N/16, K/2, 16], got {p}")
        k, n = int(p.shape[1]) * 2, int(p.shape[0]) * LANES
        groups = (k // self.group_size, n)
        if not dims_equal(x.shape[1], k) or tuple(s.shape) != groups or tuple(o.shape) != groups:
            raise self.error(f"K, N or groups differ: x {x}, p {p}, s {s}, o {o}")
        return TensorType((x.shape[0], n), DType.float32)

    def reference(self, *args: np.ndarray) -> np.ndarray:
        x, p, s, o = args
        g = self.group_size
        w = unpack_int4_panels(p).astype(np.float32) * s.repeat(g, 0) - o.repeat(g, 0)
        return (x.astype(np.float64) @ w.astype(np.float64)).astype(np.float32)

    def compute(self, *args: Any) -> Any:
        from tvm import te

        x, p, s, o = args
        g = self.group_size
        panels, pairs, _ = (int(d) for d in p.shape)

        def dequantize(c: Any, k: Any, lane: Any) -> Any:
            nibble = (p[c, k // 2, lane] >> ((k % 2) * 4).astype("uint8")) & 15
            n = c * LANES + lane
            return nibble.astype("float32") * s[k // g, n] - o[k // g, n]

        w = te.compute((panels, pairs * 2, LANES), dequantize, name="dequantize_weight")
        k = te.reduce_axis((0, pairs * 2), name="k")
        return te.compute(
            (x.shape[0], panels * LANES),
            lambda i, j: te.sum(x[i, k] * w[j // LANES, k, j % LANES], axis=k),
            name="int4_gemm",
        )


@register_op
@dataclass(frozen=True)
class Int4GroupMatMul(Op):
    """W4A4: y f32[M, N] = sum_g (sum_{k in g} q[m, k] * b[k, n] - comp[g, n]) * xs[m, g] * ws[g, n].

    q u8[M, K] from `quantize_rows(bits=4, group_size)`, xs f32[M, K / group_size]; b int4 in the
    VNNI layout packed two per byte [N / 16, K / 4, 16, 2] (`pack_vnni_int4`); ws f32[groups, N];
    comp i32[groups, N] = 8 * sum_{k in g} b[k, n]. Integer products per group, dequantized per
    group in the same kernel.
    """

    name: ClassVar[str] = "int4_group_matmul"
    group_size: int = 128

    def infer(self, *args: TensorType) -> TensorType:
        q, xs, b, ws, comp = _arity(self, args, 5)
        if q.rank != 2 or q.dtype is not DType.uint8 or xs.rank != 2:
            raise self.error(f"expects q u8[M, K] and xs f32[M, groups], got {q}, {xs}")
        if b.rank != 4 or b.dtype is not DType.uint8 or tuple(b.shape[2:]) != (LANES, 2):
            raise self.error(f"expects b u8[N/16, K/4, 16, 2], got {b}")
        k, n = int(b.shape[1]) * STEP, int(b.shape[0]) * LANES
        groups = k // self.group_size
        if k % self.group_size or self.group_size % STEP or not dims_equal(q.shape[1], k):
            raise self.error(f"K={k} must match q {q} and be a multiple of {self.group_size}")
        if tuple(ws.shape) != (groups, n) or tuple(comp.shape) != (groups, n):
            raise self.error(f"expects ws f32 and comp i32 [{groups}, {n}], got {ws}, {comp}")
        return TensorType((q.shape[0], n), DType.float32)

    def reference(self, *args: np.ndarray) -> np.ndarray:
        q, xs, b, ws, comp = args
        w = unpack_vnni_int4(b)
        g = self.group_size
        out = np.zeros((q.shape[0], w.shape[1]), np.float32)
        for i in range(w.shape[0] // g):
            acc = q[:, i * g : (i + 1) * g].astype(np.int64) @ w[i * g : (i + 1) * g].astype(
                np.int64
            )
            out += (acc - comp[i]).astype(np.float32) * xs[:, i : i + 1] * ws[i]
        return out

    def compute(self, *args: Any) -> Any:
        from tvm import te

        q, xs, b, ws, comp = args
        g = self.group_size
        panels, steps = int(b.shape[0]), int(b.shape[1])

        def unpack(c: Any, s: Any, lane: Any, t: Any) -> Any:
            nibble = ((b[c, s, lane, t // 2] >> ((t % 2) * 4).astype("uint8")) & 15).astype("int32")
            return ((nibble ^ 8) - 8).astype("int8")  # two's-complement nibble => int8

        w = te.compute((panels, steps, LANES, STEP), unpack, name="unpack_weight")
        return group_gemm(q, xs, w, ws, comp, g)


def group_gemm(q: Any, xs: Any, w: Any, scales: Any, comp: Any, g: int) -> Any:
    """TE: int8 rows `q` [M, K] times the unpacked int4 panel `w` [N/16, K/4, 16, 4] per group of
    `g`, each group's int32 sum less its zero-point term `comp` [K/g, N], scaled by the row's
    `xs` [M, K/g] and the weight's `scales` [K/g, N], summed over groups."""
    from tvm import te

    panels, steps = int(w.shape[0]), int(w.shape[1])
    kk = te.reduce_axis((0, g), name="kk")
    n = panels * LANES
    rows, row = _padded_rows(q.shape[0])
    acc = te.compute(  # groups first: each group's [rows, 16] tile is contiguous
        (steps * STEP // g, rows, n),
        lambda grp, i, j: te.sum(
            q[row(i), grp * g + kk].astype("int32")
            * w[j // LANES, grp * (g // STEP) + kk // STEP, j % LANES, kk % STEP].astype("int32"),
            axis=kk,
        ),
        name="int4_group_gemm",
    )
    grp = te.reduce_axis((0, steps * STEP // g), name="grp")
    return te.compute(
        (q.shape[0], n),
        lambda i, j: te.sum(
            (acc[grp, i, j] - comp[grp, j]).astype("float32") * xs[i, grp] * scales[grp, j],
            axis=grp,
        ),
        name="dequantize_groups",
    )


def _padded_rows(m: Any) -> tuple[Any, Any]:
    """The int32 accumulator's rows: M padded to whole register tiles of ROW_TILE when M > 8 or
    symbolic (the VNNI kernel cannot mask a partial tile); pad rows recompute row M - 1 and are
    never stored. Returns (rows, row index into q)."""
    from tvm import tirx

    if isinstance(m, tirx.IntImm) and m.value <= ROW_TILE:
        return m, lambda i: i
    # m + (-m mod 8) rather than ceil(m / 8) * 8: TVM's analyzer proves rows >= m for this form
    rows = m + tirx.floormod(-m, ROW_TILE)
    return rows, lambda i: tirx.min(i, m - 1)


def _arity(op: Op, args: tuple[TensorType, ...], n: int) -> tuple[TensorType, ...]:
    if len(args) != n:
        raise op.error(f"takes {n} inputs, got {len(args)}")
    return args
