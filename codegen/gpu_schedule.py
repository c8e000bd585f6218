"""GPU schedules for every fused function: dlight rules first, then fallbacks, never unbound loops.

dlight's `ApplyDefaultSchedule` lets a rule's exception escape and leaves a function no rule took
unscheduled, which TVM later reports as "did you forget to bind?". Here each function tries the
rules in order (a rule that raises counts as not matching), then the same rules after removing
no-op statements (a zero-extent loop, e.g. an empty slice, crashes dlight's Fallback); a function
no rule took is kept if it launches GPU threads itself, else becomes a serial kernel (one thread
per block of statements: slow but correct). A function not even that can schedule raises
`CodegenError` naming it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ember.errors import CodegenError

__all__ = ["schedule_gpu"]

log = logging.getLogger(__name__)


def schedule_gpu(mod: Any, rules: Sequence[Any], target: Any) -> Any:
    """`mod` (updated in place) with every unscheduled PrimFunc scheduled for the GPU `target`."""
    from tvm import tirx

    scheduled = {}
    for gvar, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc) and not _is_scheduled(func):
            scheduled[gvar] = _schedule_function(gvar.name_hint, func, rules, target)
    for gvar, func in scheduled.items():
        mod[gvar] = func.with_attr("tirx.is_scheduled", True)
    return mod


def _is_scheduled(func: Any) -> bool:
    return "tirx.is_scheduled" in func.attrs and int(func.attrs["tirx.is_scheduled"]) == 1


def _schedule_function(name: str, func: Any, rules: Sequence[Any], target: Any) -> Any:
    import tvm
    from tvm import tirx

    errors: list[str] = []
    simplified = tirx.transform.RemoveNoOp()(tvm.IRModule({"main": func}))["main"]
    for candidate in (func, simplified):
        sch = _first_rule(candidate, rules, target, errors)
        if sch is not None:
            return sch.mod["main"]
    if _binds_threads(func.body):  # written for GPUs already, with no block a rule could take
        return func
    serial = _try(lambda: _serial(simplified), "serial", errors)
    if serial is not None:
        log.warning("no GPU schedule rule took %s; it runs as a serial kernel (slow)", name)
        return serial
    raise CodegenError(
        f"no GPU schedule could bind the loops of fused function {name!r} to GPU threads:\n  "
        + "\n  ".join(errors)
    )


def _binds_threads(body: Any) -> bool:
    import tvm_ffi
    from tvm import tirx

    found: list[bool] = []

    def visit_attr(node: Any) -> None:
        found.append(node.attr_key == "thread_extent")

    def visit_for(node: Any) -> None:
        found.append(node.kind == tirx.ForKind.THREAD_BINDING)

    tvm_ffi.structural_walk(body, [(tirx.AttrStmt, visit_attr), (tirx.For, visit_for)])
    return any(found)


def _first_rule(func: Any, rules: Sequence[Any], target: Any, errors: list[str]) -> Any:
    for rule in rules:
        space = _try(lambda rule=rule: rule.apply(func, target, False), type(rule).__name__, errors)
        if space is not None:
            return space[0] if isinstance(space, list) else space
    return None


def _try(fn: Any, label: str, errors: list[str]) -> Any:
    try:
        return fn()
    except Exception as err:  # TVM raises plain RuntimeError/InternalError subclasses alike
        lines = [line for line in str(err).splitlines() if line.strip()]
        errors.append(f"{label}: {lines[-1] if lines else type(err).__name__}")
        return None


def _serial(func: Any) -> Any:
    """Each top-level block (or loop nest) becomes its own kernel with one thread."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    try:
        root = sch.get_sblock("root")
    except s_tir.schedule.ScheduleError:  # an opaque body (topi's ir_builder ops): no blocks
        return _one_thread(func)
    for block in sch.get_child_blocks(root):
        loops = sch.get_loops(block)
        outer = sch.add_unit_loop(loops[0] if loops else block)
        block_loop = sch.add_unit_loop(outer)
        sch.bind(block_loop, "blockIdx.x")
        sch.bind(outer, "threadIdx.x")
    return sch.mod["main"]


def _one_thread(func: Any) -> Any:
    """The whole body as one kernel of one thread."""
    from tvm import ir, tirx

    body = func.body
    for tag in ("threadIdx.x", "blockIdx.x"):
        thread = tirx.IterVar(ir.Range(0, 1), tirx.Var(tag, "int32"), tirx.IterVar.ThreadIndex, tag)
        body = tirx.AttrStmt(thread, "thread_extent", tirx.IntImm("int32", 1), body)
    return func.with_body(body)
