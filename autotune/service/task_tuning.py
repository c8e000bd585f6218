"""Tune a task list (kernels a client extracted, no graph) with MetaSchedule, as `ember tune` does
for a graph: TVM's post-order-apply space, evolutionary search and gradient task scheduler, ember's
builders, runners and cost model, records committed to the database as they are measured.

Resume works as in `tune.py`: a task that already has `trials_per_task` records on this target is
skipped, and the budget is what the others still lack, so a job picked up after its worker died
measures only what is missing.
"""

from __future__ import annotations

import base64
import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

from ember.autotune.measure import (
    InProcessBuilder,
    LocalRunner,
    MeasureConfig,
    Tracker,
    TrackerRunner,
)
from ember.autotune.tasks import Task
from ember.autotune.tune import tune_contexts
from ember.errors import TuningError

__all__ = ["tasks_from_json", "tune_task_list"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
# candidates measured per search round: records are committed (and progress reported) after each
# round, so a worker that dies loses at most this many measurements (MetaSchedule's default: 64)
_BATCH = 8


def tasks_from_json(payload: bytes) -> list[Task]:
    """The tasks of a `POST /v1/jobs/tasks` body; raises TuningError when one does not parse."""
    tasks = []
    for item in json.loads(payload):
        try:
            base64.b64decode(item["workload"][1], validate=True)
            mod = ms.database.Workload.from_json(list(item["workload"])).mod
        except Exception as err:  # TVM raises its own error types for a damaged module
            raise TuningError(f"task {item['name']!r}: cannot read its workload: {err}") from err
        tasks.append(Task(item["name"], mod, int(item["weight"]), _flops(mod)))
    return tasks


def _flops(mod: Any) -> float:
    try:
        return float(tvm.s_tir.analysis.estimate_tir_flops(mod))
    except Exception:  # kernels with opaque calls
        return 0.0


@derived_object
class _Counter(ms.measure_callback.PyMeasureCallback):
    """Reports (trials measured, trials planned) after each measured batch."""

    def __init__(self, progress: Progress, planned: int) -> None:
        super().__init__()
        self.progress = progress
        self.planned = planned
        self.measured = 0

    def apply(self, task_scheduler: Any, task_id: int, measure_candidates: Any,
              builder_results: Any, runner_results: Any) -> None:  # fmt: skip
        self.measured += len(runner_results)
        self.progress(self.measured, self.planned)


def tune_task_list(tasks: Sequence[Task], target: dict[str, Any], *, trials: int,
                   trials_per_task: int | None, database: Any, tracker: Tracker | None,
                   cost_model: str, progress: Progress, timeout_sec: float = 10.0) -> int:  # fmt: skip
    """Tune `tasks` into `database` (a MetaSchedule Database for `target`); returns the number
    of trials measured."""
    tgt = tvm.target.Target(target)
    per_task = trials_per_task or trials
    before = {t.name: _measured(database, t.mod) for t in tasks}
    todo = [t for t in tasks if before[t.name] < per_task]
    budget = min(trials, sum(per_task - before[t.name] for t in todo))
    if not todo or budget <= 0:
        progress(0, 0)
        return 0
    config = MeasureConfig(timeout_sec=timeout_sec)
    runner = TrackerRunner(tracker, config) if tracker else LocalRunner(config)
    remaining = max(per_task - before[t.name] for t in todo)
    counter = _Counter(progress, budget)
    with tempfile.TemporaryDirectory(prefix="ember-service-tune-") as work_dir:
        contexts = tune_contexts(todo, tgt)
        ms.tune.tune_tasks(
            tasks=contexts,
            task_weights=[float(t.weight) for t in todo],
            work_dir=work_dir,
            max_trials_global=budget,
            max_trials_per_task=remaining,
            num_trials_per_iter=min(_BATCH, remaining),
            builder=InProcessBuilder(),
            runner=runner,
            database=database,
            cost_model=_cost_model(cost_model, target),
            measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), counter],
        )
    return counter.measured


def _cost_model(name: str, target: dict[str, Any]) -> Any:
    """ember's pretrained model, or TVM's by name ("xgb", "random")."""
    if name != "ember":
        return name
    from ember.autotune.cost_model import ember_cost_model

    return ember_cost_model(target)


def _measured(database: Any, mod: Any) -> int:
    if not database.has_workload(mod):
        return 0
    return len(database.get_top_k(database.commit_workload(mod), 1 << 20))
