"""`Int8Gemm`: AVX512-VNNI schedule for `int8_matmul` and `int4_group_matmul` (ir/ops/quant.py).

The int32 reduction `C[i, j] += u8 A[i, k] * i8 B[j // 16, k // 4, j % 16, k % 4]` is tiled as

    parallel for (j-tile, i-tile):                 # i inner: the B panel stays in cache
        for k // 4: for ii (unrolled): for jb (unrolled):
            C[ii, jb*16 : jb*16+16] = vpdpbusd(C, broadcast(A[ii, 4k : 4k+4]), B[j, k, :, :])
        Y[i-tile] = dequantize(C) (+ fused epilogue)  # the int32 tile never leaves registers

`vpdpbusd` multiplies 64 unsigned by 64 signed bytes and adds groups of four into 16 int32 lanes;
TVM 0.27's own `dot_16x4_vnni` intrinsic no longer passes LLVM 22's verifier (the intrinsic now
takes `<64 x i8>` operands), so ember registers one that reinterprets the operands that way.
For `int4_group_matmul` the same tile runs once per group of K into an L1-resident
[groups, rows, columns] int32 tile, which the epilogue scales per group and sums in float32; the
int4 weight panel is unpacked to int8 once per column tile, in the kernel, and serves every row
tile.
"""

from __future__ import annotations

import logging
from typing import Any

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import get_root_block
from tvm.target import Target

from ember.codegen.cpu_elementwise import schedule_spatial_block
from ember.codegen.cpu_rule import CPURule, extent

__all__ = ["VNNI_INTRIN", "Int8Gemm", "register_vnni_intrinsic"]

log = logging.getLogger(__name__)

VNNI_INTRIN = "ember_vnni_16x4_u8i8i32"
LANES, STEP = 16, 4
MR = 8  # register tile rows: MR x NB int32 vectors of accumulators
NB = 2


def register_vnni_intrinsic() -> str:
    """Register the VNNI tensor intrinsic once; returns its name."""
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    try:
        TensorIntrin.get(VNNI_INTRIN)
        return VNNI_INTRIN
    except (ValueError, RuntimeError):
        pass

    @T.prim_func(s_tir=True)
    def desc(
        a: T.Buffer((4,), "uint8", offset_factor=1),
        b: T.Buffer((16, 4), "int8", offset_factor=1),
        c: T.Buffer((16,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(c[0:16], a[0:4], b[0:16, 0:4])
            T.writes(c[0:16])
            for i in T.serial(0, 16):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        c[vi] = c[vi] + T.cast(a[vk], "int32") * T.cast(b[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def impl(
        a: T.Buffer((4,), "uint8", offset_factor=1),
        b: T.Buffer((16, 4), "int8", offset_factor=1),
        c: T.Buffer((16,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(c[0:16], a[0:4], b[0:16, 0:4])
            T.writes(c[0:16])
            a_word = T.reinterpret(a.vload([0], "uint8x4"), dtype="int32")
            c[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                c.vload([0], dtype="int32x16"),
                T.reinterpret(T.broadcast(a_word, 16), dtype="uint8x64"),
                b.vload([0, 0], dtype="int8x64"),
                dtype="int32x16",
            )

    TensorIntrin.register(VNNI_INTRIN, desc, impl)
    return VNNI_INTRIN


def has_vnni(target: Target) -> bool:
    """Whether the LLVM target can emit `vpdpbusd` (AVX512-VNNI)."""
    from tvm.target.codegen import target_has_features

    return bool(target_has_features("avx512vnni", target))


class Int8Gemm(CPURule):
    """VNNI-tensorized u8 x i8 -> i32 matmul with its dequantization epilogue (module doc)."""

    def schedule(self, sch: s_tir.Schedule, target: Target) -> s_tir.Schedule | None:
        gemm = _find_int8_gemm(sch)
        if gemm is None or not has_vnni(target):
            return None
        grouped = len(sch.get_loops(gemm)) == 4  # [group, i, j, kk]: int4_group_matmul
        unpack = _inline_producers(sch, gemm)
        dequantize = sch.get_consumers(gemm)[0]
        _fold_epilogue(sch, dequantize)
        loops = sch.get_loops(gemm)
        m = extent(sch, loops[-3])
        mr = m if isinstance(m, int) and m < MR else MR
        tile, jo = _tile(sch, gemm, mr, grouped)
        if unpack is not None:  # the int4 panel, unpacked to int8 once per column tile
            sch.compute_at(unpack, jo, preserve_unit_loops=True)
            _vectorize_last(sch, unpack)
        sch.reverse_compute_at(dequantize, tile, preserve_unit_loops=True)
        if grouped:
            _sum_groups(sch, dequantize)
        else:
            _vectorize_last(sch, dequantize)
        _tensorize(sch, gemm)
        kernel = sch.get(jo)
        for block in sch.get_child_blocks(get_root_block(sch)):
            loops = sch.get_loops(block)
            if loops and not sch.get(loops[0]).same_as(kernel):  # padding copies
                schedule_spatial_block(sch, block, target)
        return sch


def _sum_groups(sch: s_tir.Schedule, dequantize: Any) -> None:
    """Sum the groups' scaled int32 tiles, vectorized across columns; a tile clipped to a
    symbolic row count (non-affine rows) keeps the scalar loop."""
    i, j, grp = sch.get_loops(dequantize)[-3:]
    try:
        sch.reorder(grp, i, j)
    except s_tir.ScheduleError:
        return
    _vectorize_last(sch, dequantize)
    _vectorize_last(sch, sch.decompose_reduction(dequantize, grp))


def block_name(sch: s_tir.Schedule, block: Any) -> str:
    return sch.get(block).name_hint


def _find_int8_gemm(sch: s_tir.Schedule) -> Any | None:
    """The block summing u8 x i8 products into int32 (see the module docstring)."""
    for block in sch.get_child_blocks(get_root_block(sch)):
        stmt = sch.get(block)
        if len(stmt.writes) != 1 or str(stmt.writes[0].source.dtype) != "int32":
            continue
        kinds = [iv.iter_type for iv in stmt.iter_vars]
        if kinds[-1] != tirx.IterVar.CommReduce or kinds.count(tirx.IterVar.CommReduce) != 1:
            continue
        dtypes = sorted(str(r.source.dtype) for r in stmt.reads if len(r.source.shape) != 1)
        if dtypes == ["int8", "uint8"] or dtypes == ["int32", "int8", "uint8"]:
            return block
    return None


def _inline_producers(sch: s_tir.Schedule, gemm: Any, keep: Any = None) -> Any | None:
    """Inline padding copies into the GEMM; returns the weight-unpack block (kept), if any."""
    unpack = keep
    for producer in sch.get_producers(gemm):
        name = block_name(sch, producer)
        if keep is not None and name == block_name(sch, keep):
            continue
        if str(sch.get(producer).writes[0].source.dtype) == "int8":
            unpack = producer  # int4 => int8 unpacking: computed per column tile, not inlined
            continue
        try:
            sch.compute_inline(producer)
        except s_tir.ScheduleError:
            continue
    return unpack


def _fold_epilogue(sch: s_tir.Schedule, dequantize: Any) -> None:
    """Inline everything after the dequantize into it (bias, activation, reshape)."""
    progress = True
    while progress:
        progress = False
        for consumer in sch.get_consumers(dequantize):
            try:
                sch.reverse_compute_inline(consumer)
            except s_tir.ScheduleError:
                continue
            progress = True


def _tile(sch: s_tir.Schedule, gemm: Any, mr: int, grouped: bool) -> tuple[Any, Any]:
    """Split into (parallel tile, k / 4, ii, jb, 16, 4); returns the tile and column-tile loops.

    Grouped GEMMs parallelize column tiles only, so the weight panel unpacked for a column tile
    serves every row tile.
    """
    loops = sch.get_loops(gemm)
    i, j, k = loops[-3], loops[-2], loops[-1]  # grouped: [group, i, j, kk]
    n = extent(sch, j)
    nb = NB if n % (NB * LANES) == 0 else 1
    # the op pads the rows to whole tiles (ir/ops/quant.py): no predicate, tensorize needs none
    io, ii = sch.split(i, [None, mr], disable_predication=True)
    jo, jb, ji = sch.split(j, [None, nb, LANES])
    ko, ki = sch.split(k, [None, STEP])
    if grouped:
        sch.reorder(jo, io, loops[0], ko, ii, jb, ji, ki)
        sch.parallel(jo)
        return io, jo
    sch.reorder(jo, io, ko, ii, jb, ji, ki)
    tile = sch.fuse(jo, io)
    sch.parallel(tile)
    return tile, tile


def _tensorize(sch: s_tir.Schedule, gemm: Any) -> None:
    """Zero-init outside the k loop, then the 16 x 4 inner loops become one `vpdpbusd`."""
    ko, ii, jb, ji, _ = sch.get_loops(gemm)[-5:]
    init = sch.decompose_reduction(gemm, ko)
    sch.unroll(ii)
    sch.unroll(jb)
    sch.tensorize(ji, register_vnni_intrinsic())
    _vectorize_last(sch, init)


def _vectorize_last(sch: s_tir.Schedule, block: Any) -> None:
    loop = sch.get_loops(block)[-1]
    n = extent(sch, loop)
    if isinstance(n, int) and n % LANES == 0:
        sch.vectorize(sch.split(loop, [None, LANES])[1])
