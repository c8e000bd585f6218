"""Zero-shot schedules: pick a kernel's schedule by ember's cost model, without measuring.

For each fused kernel that has no tuning record, sample `candidates` random points of its
MetaSchedule design space, add ember's default (dlight) schedule, score them all with the
pretrained cost model and keep the best. When the default wins, the kernel is left to the default
rules. Seeds are fixed, so a graph always gets the same schedules (the compile cache relies on it).

`kernels` chooses where this runs: "fallback" only for kernels that ember's specific rules (GEMV,
Matmul, Elementwise, RowReduction) do not match and that would get the generic Fallback schedule,
"all" for every kernel, "off" never. Kernels with symbolic dims keep the default rules: random
tile sizes need static extents. See docs/cost_model.md for the measurements behind the default.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import tvm
from tvm import tirx
from tvm.s_tir import meta_schedule as ms

from ember.autotune.cost_model import EmberCostModel, load_pretrained
from ember.autotune.measure import preload_tensor_intrinsics
from ember.codegen.schedule import default_schedule_rules
from ember.errors import TuningError

__all__ = [
    "ZeroShotKernels",
    "default_candidate",
    "kernels_to_schedule",
    "sample_candidates",
    "zero_shot_schedules",
]

log = logging.getLogger(__name__)

ZeroShotKernels = Literal["off", "fallback", "all"]
_SCHEDULED = "tirx.is_scheduled"


def sample_candidates(mod: Any, tgt: Any, count: int, seed: int) -> tuple[Any, list[Any]]:
    """A TuneContext for `mod` and up to `count` distinct random points of its design space."""
    preload_tensor_intrinsics()
    context = ms.TuneContext(
        mod=mod,
        target=tgt,
        space_generator="post-order-apply",
        search_strategy="replay-trace",
        rand_state=seed,
        num_threads="physical",
    )
    context.pre_tuning(max_trials=count, num_trials_per_iter=count)
    candidates = context.generate_measure_candidates() or []
    context.post_tuning()
    unique: dict[str, Any] = {}
    for candidate in candidates:
        unique.setdefault(ms.utils.shash2hex(candidate.sch.mod), candidate)
    return context, list(unique.values())


def default_candidate(mod: Any, spec: dict[str, Any]) -> Any:
    """ember's default schedule of a one-kernel module, as a MetaSchedule candidate."""
    from tvm.s_tir import dlight

    copy = tvm.IRModule(dict(mod.functions_items()))  # the pass rewrites its input in place
    with tvm.target.Target(spec):
        scheduled = dlight.ApplyDefaultSchedule(*default_schedule_rules(spec))(copy)
    args_info = ms.arg_info.ArgInfo.from_prim_func(scheduled["main"])
    return ms.MeasureCandidate(tvm.s_tir.Schedule(scheduled), args_info)


def zero_shot_schedules(
    mod: Any,
    spec: dict[str, Any],
    *,
    kernels: ZeroShotKernels = "fallback",
    candidates: int = 32,
    seed: int = 0,
) -> Any:
    """`mod` with the chosen kernels scheduled by the cost model (marked as scheduled, so the
    default rules skip them); the others are left as they are."""
    if kernels == "off":
        return mod
    if kernels not in ("fallback", "all"):
        raise TuningError(f"zero_shot must be 'off', 'fallback' or 'all', got {kernels!r}")
    if spec["kind"] != "llvm":
        return mod
    chosen_kernels = kernels_to_schedule(mod, spec, kernels)
    if not chosen_kernels:
        return mod
    tgt = tvm.target.Target(spec)
    model = EmberCostModel(spec, load_pretrained())
    updates = {}
    for gv, func in chosen_kernels:
        chosen = _choose(func, spec, tgt, model, candidates, seed)
        if chosen is not None:
            updates[gv] = chosen.with_attr(_SCHEDULED, True)
    for gv, func in updates.items():
        mod[gv] = func
    log.info("zero-shot scheduled %d kernels", len(updates))
    return mod


def kernels_to_schedule(mod: Any, spec: dict[str, Any], kernels: ZeroShotKernels) -> list[Any]:
    """(global var, function) of each kernel that `kernels` selects for zero-shot scheduling."""
    tgt = tvm.target.Target(spec)
    specific = default_schedule_rules(spec)[:-1]  # all but the generic Fallback
    return [
        (gv, func)
        for gv, func in mod.functions_items()
        if _schedulable(func) and (kernels == "all" or not _matches(func, specific, tgt))
    ]


def _schedulable(func: Any) -> bool:
    if not isinstance(func, tirx.PrimFunc) or int(func.attrs.get(_SCHEDULED, 0)) == 1:
        return False
    return all(isinstance(d, tirx.IntImm) for p in func.params for d in getattr(p, "shape", ()))


def _matches(func: Any, rules: list[Any], tgt: Any) -> bool:
    """Whether one of ember's specific rules schedules `func`."""
    with tgt:
        return any(rule.apply(func, tgt, False) is not None for rule in rules)


def _choose(func: Any, spec: dict[str, Any], tgt: Any, model: EmberCostModel, count: int,
            seed: int) -> Any | None:  # fmt: skip
    """The predicted-best candidate's function, or None when the default schedule wins."""
    kernel = tvm.IRModule({"main": func})
    try:
        context, sampled = sample_candidates(kernel, tgt, count, seed)
    except Exception as err:  # a kernel MetaSchedule cannot sample keeps its default schedule
        log.debug("zero-shot: no design space: %s", str(err).splitlines()[-1:])
        return None
    if not sampled:
        return None
    scores = model.predict(context, [*sampled, default_candidate(kernel, spec)])
    best = int(np.argmax(scores))
    return None if best == len(sampled) else sampled[best].sch.mod["main"]
