"""`CPURule`: the base of ember's CPU schedule rules, plus the loop helpers they share.

A rule that cannot schedule a function returns None so the next rule gets a chance; a schedule
primitive that refuses (TVM checks every primitive for correctness) is treated the same way, so a
heuristic that guessed wrong declines instead of failing the build.
"""

from __future__ import annotations

import logging
from typing import Any

from tvm import DataType, s_tir, tirx
from tvm.s_tir.dlight.base import ScheduleRule
from tvm.target import Target
from tvm.target.codegen import llvm_get_vector_width

__all__ = ["CPURule", "extent", "vector_lanes", "vectorize_inner"]

log = logging.getLogger(__name__)

# Below this many output elements a parallel region costs more than it saves (thread wake-up).
MIN_PARALLEL_ELEMENTS = 4096


class CPURule(ScheduleRule):
    """A dlight rule for `llvm` targets; subclasses implement `schedule`."""

    def schedule(self, sch: s_tir.Schedule, target: Target) -> s_tir.Schedule | None:
        """Schedule `sch` in place and return it, or None when the pattern does not fit."""
        raise NotImplementedError

    def apply(self, func: Any, target: Target, tunable: bool) -> s_tir.Schedule | None:
        if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
            return None
        try:
            return self.schedule(s_tir.Schedule(func), target)
        except (RuntimeError, ValueError) as err:  # ScheduleError and TVMError derive from these
            log.debug("%s declined: %s", type(self).__name__, str(err).splitlines()[-1:])
            return None


def vector_lanes(target: Target, dtype: str) -> int:
    """SIMD lanes for `dtype` (16 for float32 on AVX-512)."""
    bits = llvm_get_vector_width(target)
    width = DataType(dtype).bits if dtype != "bool" else 8
    return max((bits if bits > 0 else 128) // width, 1)


def extent(sch: s_tir.Schedule, loop: Any) -> int | Any:
    """A loop's extent: an int when static, else the symbolic expression."""
    value = sch.get(loop).extent
    return value.value if isinstance(value, tirx.IntImm) else value


def vectorize_inner(sch: s_tir.Schedule, loop: Any, lanes: int) -> None:
    """Vectorize `loop` by `lanes` when its extent is a static multiple (no tail predicate)."""
    n = extent(sch, loop)
    if not isinstance(n, int) or n < 2:
        return
    if n <= lanes:
        if lanes % n == 0:
            sch.vectorize(loop)
        return
    for width in (lanes, lanes // 2, lanes // 4):
        if width >= 2 and n % width == 0:
            sch.vectorize(sch.split(loop, [None, width])[1])
            return
