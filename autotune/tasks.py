"""Tuning tasks: the distinct kernels of a graph as `codegen.build` compiles them.

Tasks come from the very module `build` schedules (weights packed for CPU, lowered, fused by Relax
FuseOps/FuseTIR, fast math applied), so the records tuning writes carry the structural hashes that
`build(..., database=...)` looks up. MetaSchedule's `extract_tasks` deduplicates kernels by
structural hash and weights each task by how many call sites run it.

Symbolic shapes: a kernel over a symbolic dim cannot be timed as it is. It is tuned at a
representative size, each symbol set to its hint (the graph's `symbol_ranges` upper bound, capped at
`_MAX_HINT`, or `_DEFAULT_HINT` when unbounded), and the task remembers the symbolic kernel:
`tune.py` replays the best schedule found onto it and stores that record too, when the replay
applies (schedules whose tile sizes need static extents do not; those kernels keep ember's default
schedule).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import tvm
from tvm import tirx

from ember.codegen.build import fuse
from ember.codegen.cpu_matmul import panel_width
from ember.codegen.lower import to_relax
from ember.codegen.pack_weights import pack_matmul_weights
from ember.codegen.target import resolve_target
from ember.ir import Graph

__all__ = ["Task", "extract_tasks", "fused_module"]

log = logging.getLogger(__name__)

_DEFAULT_HINT = 128  # a symbolic dim without an upper bound is tuned at this size
_MAX_HINT = 1024  # tuning at a huge upper bound wastes the budget on one slow kernel


@dataclass(frozen=True)
class Task:
    """One kernel to tune.

    `mod` is what is measured (static shapes); `symbolic` is the kernel `build` sees when it has
    symbolic dims (the best schedule of `mod` is replayed onto it), else None. `weight` counts the
    call sites that run it; `flops` is one call's floating point operations at `mod`'s shapes.
    """

    name: str
    mod: Any
    weight: int
    flops: float
    symbolic: Any | None = None
    hints: tuple[tuple[str, int], ...] = ()


def fused_module(g: Graph, target: dict[str, Any]) -> Any:
    """The module `codegen.build` schedules for `g` (see the module doc): keep the two in step."""
    tgt = tvm.target.Target(target)
    if target["kind"] == "llvm":
        g = pack_matmul_weights(
            g, panel=panel_width(tgt), wide_panel=panel_width(tgt, symbolic_rows=True)
        )
    with tgt:
        return fuse(to_relax(g))


def extract_tasks(g: Graph, target: str | dict[str, Any]) -> list[Task]:
    """The graph's distinct kernels, heaviest first (flops x weight)."""
    from tvm.s_tir import meta_schedule as ms

    spec = resolve_target(target)
    mod = fused_module(g, spec)
    extracted = ms.relax_integration.extract_tasks(mod, tvm.target.Target(spec))
    tasks = []
    for task in extracted:
        kernel = task.dispatched[0]
        hints = _hints(kernel, g.symbol_ranges)
        tuned = _specialize(kernel, dict(hints)) if hints else kernel
        tasks.append(
            Task(
                name=task.task_name,
                mod=tuned,
                weight=int(task.weight),
                flops=_flops(tuned),
                symbolic=kernel if hints else None,
                hints=hints,
            )
        )
    log.info("%d tasks in %s: %s", len(tasks), g.name, [t.name for t in tasks])
    return sorted(tasks, key=lambda t: -t.flops * t.weight)


def _free_vars(mod: Any) -> list[Any]:
    """The symbolic shape variables of the kernel's buffers, in first-seen order."""
    func = mod["main"]
    found: dict[str, Any] = {}
    for param in func.params:
        for dim in getattr(param, "shape", ()):  # 0.27: buffer parameters carry their shape
            for var in tirx.analysis.undefined_vars(dim):
                found.setdefault(var.name, var)
    return list(found.values())


def _hints(mod: Any, ranges: Any) -> tuple[tuple[str, int], ...]:
    hints = []
    for var in _free_vars(mod):
        low, high = ranges.get(var.name, (1, None))
        size = _DEFAULT_HINT if high is None else min(int(high), _MAX_HINT)
        hints.append((var.name, max(int(low), size)))
    return tuple(hints)


def _specialize(mod: Any, hints: dict[str, int]) -> Any:
    """The kernel with each symbolic buffer dim evaluated at the hints."""
    func = mod["main"]
    analyzer = tvm.sym.Analyzer()
    for var in _free_vars(mod):
        analyzer.bind(var, tirx.IntImm("int64", hints[var.name]))  # ember lowers dims as int64
    bindings = {}
    for param in func.params:
        shape = getattr(param, "shape", ())
        if any(not isinstance(d, tirx.IntImm) for d in shape):
            static = [analyzer.simplify(d) for d in shape]
            bindings[param] = tirx.decl_buffer(static, param.dtype, param.name)
    return tvm.IRModule({"main": func.specialize(bindings)})


def _flops(mod: Any) -> float:
    try:
        return float(tvm.s_tir.analysis.estimate_tir_flops(mod))
    except Exception:  # kernels with opaque calls: GFLOP/s is then not reported
        return 0.0
