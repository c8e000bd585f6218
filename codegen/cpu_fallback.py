"""`Fallback`: the last CPU rule; every block gets at least a parallel outer loop.

Spatial blocks get the elementwise nest; any other block gets its outermost loop parallel when TVM
accepts it (the primitive checks that the loop binds only data-parallel iterators).
"""

from __future__ import annotations

from typing import Any

from tvm import s_tir
from tvm.s_tir.dlight.analysis import get_root_block
from tvm.target import Target

from ember.codegen.cpu_elementwise import schedule_spatial_block
from ember.codegen.cpu_rule import CPURule

__all__ = ["Fallback"]


class Fallback(CPURule):
    """Parallelize each root block's outer loops; never declines a PrimFunc it can parse."""

    def schedule(self, sch: s_tir.Schedule, target: Target) -> s_tir.Schedule | None:
        for block in sch.get_child_blocks(get_root_block(sch)):
            if all(iv.iter_type == iv.DataPar for iv in sch.get(block).iter_vars):
                schedule_spatial_block(sch, block, target)
            else:
                _parallel_outer(sch, block)
        return sch


def _parallel_outer(sch: s_tir.Schedule, block: Any) -> None:
    loops = sch.get_loops(block)
    if not loops:
        return
    try:
        sch.parallel(loops[0])
    except s_tir.ScheduleError:
        return  # the outer loop carries the reduction: keep it serial
