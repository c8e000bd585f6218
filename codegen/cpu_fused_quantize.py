"""`FusedQuantize`: CPU schedule for `fused_quantize_rows` (ir/ops/quant_fused.py).

    parallel for row i:
        [rms_norm / layer_norm] row statistics: lanes partial sums, one horizontal step
        y[K] = producer row                       # a row buffer, vectorized
        for each head:
            absmax per group of y[columns] (* m)  # lanes partial maxima
            scale[i, g] = absmax / levels
            q[i, :] = round(y[columns] (* m) / scale) + offset   # vectorized, u8 stores

Everything is computed at the row: between the producer and the integer matmuls, float data
exists only as row buffers (each head's selected, zero-padded columns). The multiplier and
FuseOps' reshapes are inlined into the blocks reading them. The op's TE has one root block (the
first row statistic, or silu_mul's row) that every other block depends on, so moving them
under its row loop gives each one row; a function with another root is declined.
"""

from __future__ import annotations

import contextlib
from typing import Any

from tvm import s_tir
from tvm.s_tir.dlight.analysis import get_root_block
from tvm.target import Target

from ember.codegen.cpu_rule import CPURule, extent, vector_lanes, vectorize_inner
from ember.ir.ops.quant_fused import ROW_BLOCK

__all__ = ["FusedQuantize"]

# computed once per row, not inlined into their readers
KEEP = (ROW_BLOCK, "rstd", "mean", "silu_mul")


class FusedQuantize(CPURule):
    """Row-parallel, vectorized producer + quantization (module docstring)."""

    def schedule(self, sch: s_tir.Schedule, target: Target) -> s_tir.Schedule | None:
        blocks = sch.get_child_blocks(get_root_block(sch))
        if not any(sch.get(b).name_hint.startswith(ROW_BLOCK) for b in blocks):
            return None
        lanes = vector_lanes(target, "float32")
        for block in blocks:
            if sch.get(block).name_hint.startswith(KEEP):
                continue
            try:  # selection, padding, multiplier, FuseOps' reshapes; outputs are refused
                sch.compute_inline(block)
            except s_tir.ScheduleError:
                if sch.get(block).init is not None:
                    _rfactor(sch, block, lanes)
        blocks = sch.get_child_blocks(get_root_block(sch))
        if any(not sch.get_producers(b) for b in blocks[1:]):
            return None  # moved into the rows, a block reading only inputs would cover them all
        rows = sch.get_loops(blocks[0])[0]
        for block in blocks[1:]:
            sch.reverse_compute_at(block, rows, preserve_unit_loops=True)
            if sch.get(block).name_hint.endswith("_rf"):
                _lanes_inner(sch, block, lanes)
        sch.parallel(rows)
        for block in sch.get_child_blocks(get_root_block(sch)):
            _vectorize(sch, block, lanes)
        return sch


def _lanes_inner(sch: s_tir.Schedule, block: Any, lanes: int) -> None:
    """Moved under the row loop, an rfactor block's lanes loop comes first: make it innermost
    (its reduction steps outside) so the partial results vectorize."""
    loops = sch.get_loops(block)
    if len(loops) > 2 and extent(sch, loops[1]) == lanes:
        sch.reorder(*loops[2:], loops[1])


def _rfactor(sch: s_tir.Schedule, block: Any, lanes: int) -> None:
    """`lanes` independent partial results for a reduction over a multiple of `lanes`."""
    loops = sch.get_loops(block)
    n = extent(sch, loops[-1])
    if not isinstance(n, int) or n % lanes or n == lanes:
        return
    _, inner = sch.split(loops[-1], [None, lanes])
    try:
        sch.rfactor(inner, factor_axis=len(sch.get(block).writes[0].region))
    except s_tir.ScheduleError:
        return  # e.g. a tuple reduction: stays scalar


def _vectorize(sch: s_tir.Schedule, block: Any, lanes: int) -> None:
    """Vectorize the innermost spatial loop (partial results, row buffer, levels); optional."""
    with contextlib.suppress(s_tir.ScheduleError):  # refused for a reduction loop
        vectorize_inner(sch, sch.get_loops(block)[-1], lanes)
    loops = sch.get_loops(block)
    if sch.get(block).init is not None and len(loops) > 2:
        try:  # a separate (vectorized) init loop; refused when the reduction is not innermost
            sch.decompose_reduction(block, loops[-2])
        except s_tir.ScheduleError:
            return
