"""Per-kernel times of one model call, through the Relax VM's instrument hook.

TVM 0.27 has no VM profiler (`vm_profiler_load_executable` is gone); the VM instead calls an
instrument function before and after every Call instruction. Timing between the two gives each
kernel's wall time, plus a few microseconds of Python callback overhead per call, which matters
only for the tiny `vm.builtin.*` calls (shape checks, allocation), listed separately.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["KernelTime", "profile_call"]

_BUILTIN_PREFIX = "vm.builtin."


@dataclass(frozen=True)
class KernelTime:
    """Total time of one kernel (or VM builtin) over all its calls in one model call."""

    name: str
    calls: int
    total_ms: float

    @property
    def is_builtin(self) -> bool:
        return self.name.startswith(_BUILTIN_PREFIX)


def profile_call(vm: Any, ffi: Any, call: Callable[[], Any]) -> list[KernelTime]:
    """Run `call()` with the VM instrumented; kernels sorted by total time, slowest first."""
    totals: dict[str, list[float]] = {}
    started: list[int] = []

    def instrument(_func: Any, symbol: Any, before_run: bool, _ret: Any, *_args: Any) -> int:
        if before_run:
            started.append(time.perf_counter_ns())
        else:
            entry = totals.setdefault(str(symbol), [0, 0.0])
            entry[0] += 1
            entry[1] += (time.perf_counter_ns() - started.pop()) / 1e6
        return 0  # VMInstrumentReturnKind.NoOp: run the call as usual

    vm["set_instrument"](ffi.convert(instrument))
    try:
        call()
    finally:
        vm["set_instrument"](None)
    rows = [KernelTime(name, int(calls), ms) for name, (calls, ms) in totals.items()]
    return sorted(rows, key=lambda r: (-r.total_ms, r.name))
