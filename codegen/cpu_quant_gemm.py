"""`Int4Gemm`: CPU schedule for `int4_matmul` (W4A16, ir/ops/quant.py) with fused dequantization.

    parallel for j-panel (16 columns, one float32 vector):
        [large M] w[K, 16] = dequantize(packed panel)   # once per panel, reused by every row
        for i-tile: for k: for ii (unrolled):
            acc[ii, :] += x[i, k] * w[k, :]             # [small M] w dequantized in registers
        y[i-tile] = acc (+ fused epilogue)

Only the packed bytes (K * N / 2) and the group scales come from memory; the float32 weight
exists in registers (small M: decode, memory-bound) or as one L2-resident panel (large M: the
[K, 32] panel is exactly what `cpu_matmul`'s packed-weight kernel reads, and the loop nest below
it is that kernel's 8 x 32 register tile, so prefill runs at fp32 GEMM speed plus one dequantize
per weight element; with a 4-row tile it was ~10% slower than fp32 at M=512, N=K=4096).
"""

from __future__ import annotations

from typing import Any

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import get_root_block
from tvm.target import Target

from ember.codegen.cpu_elementwise import schedule_spatial_block
from ember.codegen.cpu_matmul import MR, NR_VECTORS
from ember.codegen.cpu_rule import CPURule, extent, vector_lanes

__all__ = ["Int4Gemm"]

NB = NR_VECTORS  # 16-column panels per tile: MR x NB float32 accumulators, as the fp32 GEMM
STAGE_MIN_ROWS = 16  # from this many rows, dequantize each panel once instead of per row tile


class Int4Gemm(CPURule):
    """Register-tiled float32 GEMM/GEMV reading a packed int4 weight (module docstring)."""

    def schedule(self, sch: s_tir.Schedule, target: Target) -> s_tir.Schedule | None:
        found = _find(sch)
        if found is None:
            return None
        gemm, weight = found
        lanes = vector_lanes(target, "float32")
        for producer in sch.get_producers(gemm):  # activation prologue (1 / s, reshape)
            if not sch.get(producer).same_as(sch.get(weight)):
                sch.compute_inline(producer)
        i, j, k = sch.get_loops(gemm)
        m = extent(sch, i)
        stage = not (isinstance(m, int) and m < STAGE_MIN_ROWS)
        mr = min(m, MR) if isinstance(m, int) else MR
        n = extent(sch, j)
        nb = NB if n % (NB * lanes) == 0 else 1
        io, ii = sch.split(i, [None, mr])
        jo, ji = sch.split(j, [None, nb * lanes])
        ko, ki = sch.split(k, [None, 2])  # the two nibbles of a byte
        sch.reorder(jo, io, ko, ki, ii, ji)
        sch.parallel(jo)
        store = sch.cache_write(gemm, 0, "local")
        sch.reverse_compute_at(store, io, preserve_unit_loops=True)
        _fold_epilogue(sch, store)
        if stage:  # before decompose_reduction: compute_at needs a whole reduction block
            sch.compute_at(weight, jo, preserve_unit_loops=True)
            _vectorize(sch, sch.get_loops(weight)[-1], lanes)
        else:
            sch.compute_inline(weight)
        sch.unroll(ki)
        sch.unroll(ii)
        _vectorize(sch, ji, lanes)
        init = sch.decompose_reduction(gemm, ko)
        for block in (init, store):
            loops = sch.get_loops(block)
            sch.unroll(loops[-2])
            _vectorize(sch, loops[-1], lanes)
        kernel = sch.get(jo)
        for block in sch.get_child_blocks(get_root_block(sch)):
            loops = sch.get_loops(block)
            if loops and not sch.get(loops[0]).same_as(kernel):
                schedule_spatial_block(sch, block, target)
        return sch


def _find(sch: s_tir.Schedule) -> tuple[Any, Any] | None:
    """(the float32 reduction, the weight-dequantize block feeding it that reads uint8)."""
    for block in sch.get_child_blocks(get_root_block(sch)):
        stmt = sch.get(block)
        kinds = [iv.iter_type for iv in stmt.iter_vars]
        if len(kinds) != 3 or kinds[2] != tirx.IterVar.CommReduce:
            continue
        for producer in sch.get_producers(block):
            reads = sch.get(producer).reads
            if any(str(r.source.dtype) == "uint8" and len(r.source.shape) == 3 for r in reads):
                return block, producer
    return None


def _fold_epilogue(sch: s_tir.Schedule, store: Any) -> None:
    progress = True
    while progress:
        progress = False
        for consumer in sch.get_consumers(store):
            try:
                sch.reverse_compute_inline(consumer)
            except s_tir.ScheduleError:
                continue
            progress = True


def _vectorize(sch: s_tir.Schedule, loop: Any, lanes: int) -> None:
    n = extent(sch, loop)
    if isinstance(n, int) and n % lanes == 0:
        outer, vector = sch.split(loop, [None, lanes])
        sch.unroll(outer)
        sch.vectorize(vector)
