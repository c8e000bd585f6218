"""`Elementwise`: CPU schedule for injective functions (elementwise, broadcast, transpose,
reshape-copy, gather): inline into the outputs, parallelize the outer loops, vectorize the inner."""

from __future__ import annotations

import math
from typing import Any

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import try_inline
from tvm.target import Target

from ember.codegen.cpu_rule import (
    MIN_PARALLEL_ELEMENTS,
    CPURule,
    extent,
    vector_lanes,
    vectorize_inner,
)

__all__ = ["Elementwise", "schedule_spatial_block"]


class Elementwise(CPURule):
    """Every block spatial: each block left after inlining gets a parallel, vectorized nest."""

    def schedule(self, sch: s_tir.Schedule, target: Target) -> s_tir.Schedule | None:
        infos = normalize_prim_func(sch)
        if not infos or not all(info.is_injective() for info in infos):
            return None
        if any(_is_reduction(sch, info.block_rv) for info in infos):
            return None  # a length-1 reduction looks injective, but inlining its init is wrong
        for info in try_inline(sch, infos):
            schedule_spatial_block(sch, info.block_rv, target)
        return sch


def _is_reduction(sch: s_tir.Schedule, block: Any) -> bool:
    stmt = sch.get(block)
    return stmt.init is not None or any(
        v.iter_type == tirx.IterVar.CommReduce for v in stmt.iter_vars
    )


def schedule_spatial_block(sch: s_tir.Schedule, block: Any, target: Target) -> None:
    """Fuse the block's loops into `parallel outer × vectorized inner`.

    The inner part is the longest run of trailing static loops, so broadcast and transposed reads
    keep simple index arithmetic; it is vectorized only when the lanes divide it (no tail masks).
    """
    loops = list(sch.get_loops(block))
    if not loops:
        return
    dtype = str(sch.get(block).writes[0].source.dtype) if sch.get(block).writes else "float32"
    lanes = vector_lanes(target, dtype)
    extents = [extent(sch, loop) for loop in loops]
    first_static = len(loops)
    while first_static > 0 and isinstance(extents[first_static - 1], int):
        first_static -= 1
    run = math.prod(extents[first_static:])
    if first_static < len(loops) and run % lanes == 0:
        outer_part, vector = sch.split(sch.fuse(*loops[first_static:]), [None, lanes])
        outer = [*loops[:first_static], outer_part]
    elif first_static < len(loops):
        vector, outer = loops[-1], loops[:-1]
    else:
        vector, outer = None, loops
    # symbolic sizes are assumed large
    total = math.prod(extents) if first_static == 0 else MIN_PARALLEL_ELEMENTS
    if total < MIN_PARALLEL_ELEMENTS:
        outer = []
    if not outer and vector is not None and total >= MIN_PARALLEL_ELEMENTS:
        sch.parallel(vector)  # one long odd-sized loop: threads matter more than lanes
        return
    if outer:
        sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
    if vector is not None:
        vectorize_inner(sch, vector, lanes)
