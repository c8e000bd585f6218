"""`RowReduction`: CPU schedule for row-wise reductions and the injective blocks around them
(softmax, log-softmax, layer norm, RMS norm, sum/mean/max over the trailing axes).

    parallel for row in (leading spatial axes):            # every block computed at the row
        max/sum over the row: lanes partial results (rfactor), then one horizontal step
        elementwise parts (exp, normalize) vectorized along the row

dlight's cpu.Reduction has the same outline but leaves reductions scalar; here a reduction over a
static trailing extent divisible by the vector width is split and rfactored so its body vectorizes.
"""

from __future__ import annotations

from typing import Any

from tvm import s_tir
from tvm.s_tir.dlight.analysis import get_root_block, normalize_prim_func
from tvm.target import Target

from ember.codegen.cpu_matmul import matmul_traits
from ember.codegen.cpu_rule import CPURule, extent, vector_lanes, vectorize_inner

__all__ = ["RowReduction"]


class RowReduction(CPURule):
    """Parallel over the shared leading spatial axes; vectorized reductions and elementwise."""

    def schedule(self, sch: s_tir.Schedule, target: Target) -> s_tir.Schedule | None:
        infos = normalize_prim_func(sch)
        if not infos or all(info.is_injective() for info in infos):
            return None
        if any(not i.is_injective() and matmul_traits(sch.get(i.block_rv)) for i in infos):
            return None  # a contraction: Matmul's job
        kinds = [info.dom_kind() for info in infos]
        if any("R" in k and k.rstrip("R") != k.replace("R", "") for k in kinds):
            return None  # only trailing reduction axes: S...SR...R
        leading = min(len(k) - len(k.lstrip("S")) for k in kinds)
        if leading == 0:
            return None
        dtype = str(sch.get(infos[-1].block_rv).writes[0].source.dtype)
        lanes = vector_lanes(target, dtype)
        for info in infos:
            if not info.is_injective():
                _vectorizable_rfactor(sch, info.block_rv, lanes)
        blocks = list(sch.get_child_blocks(get_root_block(sch)))
        loops = sch.get_loops(blocks[-1])
        rows = sch.fuse(*loops[:leading]) if leading > 1 else loops[0]
        sch.parallel(rows)
        for block in reversed(blocks[:-1]):
            sch.compute_at(block, rows, preserve_unit_loops=True)
        for block in sch.get_child_blocks(get_root_block(sch)):
            _vectorize_block(sch, block, lanes)
        return sch


def _vectorizable_rfactor(sch: s_tir.Schedule, block: Any, lanes: int) -> None:
    """Split the last reduction loop by `lanes` and rfactor it: lanes independent accumulators."""
    loops = sch.get_loops(block)
    n = extent(sch, loops[-1])
    if not isinstance(n, int) or n % lanes != 0 or n == lanes:
        return
    _, inner = sch.split(loops[-1], [None, lanes])
    sch.rfactor(inner, factor_axis=len(sch.get(block).writes[0].region))


def _vectorize_block(sch: s_tir.Schedule, block: Any, lanes: int) -> None:
    """Vectorize a block's innermost loop when it is spatial (rfactor partials, elementwise).

    Optional: TVM refuses an illegal vectorization, and the block then stays scalar.
    """
    try:
        if sch.get(block).init is not None:
            loops = sch.get_loops(block)
            if len(loops) < 3:
                return
            init = sch.decompose_reduction(block, loops[-2])
            vectorize_inner(sch, sch.get_loops(init)[-1], lanes)
        vectorize_inner(sch, sch.get_loops(block)[-1], lanes)
    except s_tir.ScheduleError:
        return
