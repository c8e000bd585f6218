"""`GEMV`: dlight's CPU matrix-vector rule without its explicit full unroll of the reduction.

dlight's cpu.GEMV vectorizes up to 128 output rows and unrolls up to 256 reduction steps inside
that vector loop; LLVM then spends minutes on the unrolled gathers (a [256, 128] @ [128, 1] gate in
Qwen2-MoE did not finish compiling in 5 min, and compiles in 2 s without the unroll).
"""

from __future__ import annotations

from typing import Any

from tvm import s_tir
from tvm.s_tir.dlight import cpu
from tvm.target import Target

__all__ = ["GEMV"]

_UNROLL = ("pragma_auto_unroll_max_step", "pragma_unroll_explicit")


class GEMV(cpu.GEMV):
    """cpu.GEMV's schedule, reduction loops left for LLVM to unroll as it sees fit."""

    def apply(self, func: Any, target: Target, tunable: bool) -> s_tir.Schedule | None:
        try:
            sch = super().apply(func, target, tunable)
        except (AssertionError, ValueError):
            # dlight assumes loop nests it does not check (a reduction loop exists; exactly
            # batch/spatial/reduction/inner loops after normalizing): decline the others
            return None
        if sch is None:
            return None
        for block in sch.get_child_blocks(sch.get_sblock("root")):
            for loop in sch.get_loops(block):
                for key in _UNROLL:
                    if key in sch.get(loop).annotations:
                        sch.unannotate(loop, key)
        return sch
