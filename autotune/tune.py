"""Tune a graph's kernels with MetaSchedule and store the measured schedules in a database.

The search is TVM's: MetaSchedule's post-order-apply design space, its evolutionary search and
its gradient task scheduler (which spends the global budget where it pays off). The cost model that
ranks candidates is ember's (`cost_model.py`: XGBoost on TVM's features plus a target description,
pretrained) or TVM's own XGBoost or random model. ember supplies the tasks (`tasks.py`), builders and
runners that work here (`measure.py`), the tuning curve (`tuning_curve.py`) and the report. The
evolutionary search seeds itself from the database's best records, so a resumed run continues from
what was found before.

Resume: a task that already has `trials_per_task` measured records for this target is skipped;
the others are tuned up to the largest remaining budget among them (the task scheduler takes one
per-task cap, so a partly tuned task may get a few more trials than it lacks).

"Best during tuning" is the minimum of noisy runs, 20-40% optimistic here (TVM_NOTES): the report's
latencies are re-measured, the default schedule and the best record interleaved.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

from ember.autotune.measure import (
    InProcessBuilder,
    LocalRunner,
    MeasureConfig,
    PoolBuilder,
    PoolRunner,
    Tracker,
    TrackerRunner,
    noise,
    preload_tensor_intrinsics,
)
from ember.autotune.tasks import Task, extract_tasks
from ember.autotune.tuning_curve import CurvePoint, TuningCurve
from ember.codegen.schedule import default_schedule_rules
from ember.codegen.target import resolve_target
from ember.errors import TuningError
from ember.ir import Graph

__all__ = ["TaskReport", "TuneReport", "tune"]

log = logging.getLogger(__name__)

CostModel = Literal["ember", "xgb", "random"]  # ember's model, TVM's XGBModel, RandomModel
Progress = Callable[[int, int], None]  # (trials measured so far, trials planned)

# known-good kernels, 5 samples of >= 50 ms each: a slow default schedule must not time out
_REMEASURE = MeasureConfig(repeat=5, min_repeat_ms=50, timeout_sec=120.0)
_ROUNDS = 3  # re-measurement rounds, default and tuned interleaved


@dataclass(frozen=True)
class TaskReport:
    """One task after tuning. Latencies are re-measured medians in ms (None: not measurable)."""

    name: str
    weight: int
    flops: float
    trials: int  # measured in this run
    total_trials: int  # in the database for this target, this run included
    skipped: bool  # already tuned to the budget
    default_ms: float | None  # ember's default schedule
    tuned_ms: float | None  # the best record
    noise: float  # (max - min) / median of the tuned re-measurement
    hints: dict[str, int]  # symbol -> size it was tuned at (symbolic kernels)
    applies_to_symbolic: bool | None  # the schedule replays onto the symbolic kernel

    @property
    def gflops(self) -> float | None:
        """GFLOP/s of the tuned kernel."""
        if not self.flops or self.tuned_ms is None:
            return None
        return self.flops / (self.tuned_ms * 1e-3) / 1e9


@dataclass(frozen=True)
class TuneReport:
    """What a `tune` call did: its tasks (heaviest first), trials, seconds, settings, and the
    tuning curve (best latency after each measured batch)."""

    graph: str
    target: dict[str, Any]
    cost_model: str
    trials: int
    seconds: float
    tasks: tuple[TaskReport, ...]
    curve: tuple[CurvePoint, ...] = ()

    @property
    def model_ms(self) -> float | None:
        """Sum over tasks of weight x re-measured latency (tuned, else default)."""
        total = 0.0
        for t in self.tasks:
            latency = t.tuned_ms if t.tuned_ms is not None else t.default_ms
            if latency is None:
                return None
            total += t.weight * latency
        return total

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the CLI's log)."""
        return {
            **asdict(self),
            "tasks": [{**asdict(t), "gflops": t.gflops} for t in self.tasks],
            "model_ms": self.model_ms,
        }


@derived_object
class _Recorder(ms.measure_callback.PyMeasureCallback):
    """Feeds each measured batch to the tuning curve and the progress bar."""

    def __init__(self, names: list[str], curve: TuningCurve, progress: Progress | None,
                 planned: int) -> None:  # fmt: skip
        super().__init__()
        self.names = names
        self.curve = curve
        self.progress = progress
        self.planned = planned

    def apply(self, task_scheduler: Any, task_id: int, measure_candidates: Any,
              builder_results: Any, runner_results: Any) -> None:  # fmt: skip
        samples = [
            [float(x) * 1e3 for x in r.run_secs] if r.error_msg is None and r.run_secs else []
            for r in runner_results
        ]
        self.curve.record(self.names[task_id], samples)
        if self.progress is not None:
            self.progress(self.curve.trials, self.planned)


def tune(
    g: Graph,
    target: str | dict[str, Any],
    *,
    trials: int,
    database: Any,
    trials_per_task: int | None = None,
    cost_model: CostModel = "ember",
    tracker: Tracker | None = None,
    timeout_sec: float = 10.0,
    workers: int = 2,
    cache_flush: bool = False,
    progress: Progress | None = None,
    seed: int = 0,
) -> TuneReport:
    """Tune `g`'s kernels for `target` with at most `trials` measurements in all.

    `database` is a MetaSchedule Database (ember's adapter, or TVM's JSON/memory ones): records
    are committed to it as they are measured. Pass `tracker` to measure on a remote device; GPU
    targets require one. `workers` processes build candidates in parallel and one more measures
    them (timeouts kill a candidate, crashes fail it alone); `workers=0` builds and measures in
    this process, where nothing can be killed: `timeout_sec` is not enforced there.
    """
    start = time.perf_counter()
    spec = resolve_target(target)
    if spec["kind"] != "llvm" and tracker is None:
        raise TuningError(
            f"tuning for {spec['kind']} measures on a {spec['kind']} device and this machine has "
            f"none: pass --rpc-tracker HOST:PORT --rpc-key KEY for a remote one (ember compile "
            f"without tuning records uses the default schedules)"
        )
    if trials < 1:
        raise TuningError(f"--trials must be at least 1, got {trials}")
    preload_tensor_intrinsics()
    tgt = tvm.target.Target(spec)
    per_task = trials_per_task or trials
    tasks = extract_tasks(g, spec)
    before = {t.name: _tuned_trials(database, t.mod) for t in tasks}
    todo = [t for t in tasks if before[t.name] < per_task]
    model = _cost_model(cost_model, spec) if todo else None
    curve = TuningCurve({t.name: t.weight for t in tasks}, _best_ms(database, tasks, tgt))
    config = MeasureConfig(timeout_sec=timeout_sec, cache_flush=cache_flush)
    builder, runner = _measurers(workers, tracker, config)
    try:
        if todo:
            _search(todo, tgt, database, builder, runner, before, per_task, trials, model,
                    _Recorder([t.name for t in todo], curve, progress, 0), seed)  # fmt: skip
        reports = [
            _report(t, tgt, spec, database, builder, runner, before[t.name], t not in todo)
            for t in tasks
        ]
    finally:
        builder.cleanup()
        runner.cleanup()
    points = curve.points({r.name: r.default_ms for r in reports})
    return TuneReport(g.name, spec, cost_model, trials, time.perf_counter() - start,
                      tuple(reports), tuple(points))  # fmt: skip


def _measurers(workers: int, tracker: Tracker | None, config: MeasureConfig) -> tuple[Any, Any]:
    """The builder and runner: worker processes, or this process when `workers` is 0."""
    if workers < 0:
        raise TuningError(f"--workers must be 0 (this process) or more, got {workers}")
    builder = PoolBuilder(workers) if workers else InProcessBuilder()
    if tracker is not None:
        return builder, TrackerRunner(tracker, config)
    return builder, PoolRunner(config) if workers else LocalRunner(config)


def _cost_model(name: CostModel, spec: dict[str, Any]) -> Any:
    """The MetaSchedule cost model `name` for `spec` (TVM's are created by name)."""
    if name != "ember":
        return name
    try:
        from ember.autotune.cost_model import ember_cost_model
    except ImportError as err:
        raise TuningError(
            f"ember's cost model is not available ({err}); use --cost-model tvm-xgb or random"
        ) from err
    return ember_cost_model(spec)


def _best_ms(database: Any, tasks: list[Task], tgt: Any) -> dict[str, float]:
    """Each task's best latency already in the database, in ms (the curve's starting point)."""
    found = {}
    for t in tasks:
        record = database.query_tuning_record(t.mod, tgt, "main")
        if record is not None and record.run_secs:
            found[t.name] = statistics.mean(float(x) for x in record.run_secs) * 1e3
    return found


def tune_contexts(tasks: list[Task], tgt: Any, seed: int = 0) -> list[Any]:
    """MetaSchedule's tuning context per task: its design space and evolutionary search."""
    return [
        ms.TuneContext(
            mod=t.mod,
            target=tgt,
            space_generator="post-order-apply",
            search_strategy="evolutionary",
            task_name=t.name,
            rand_state=seed + i,
            num_threads="physical",
        ).clone()
        for i, t in enumerate(tasks)
    ]


def _search(todo: list[Task], tgt: Any, database: Any, builder: Any, runner: Any,
            before: dict[str, int], per_task: int, trials: int, cost_model: Any,
            recorder: _Recorder, seed: int) -> None:  # fmt: skip
    remaining = max(per_task - before[t.name] for t in todo)
    budget = min(trials, sum(per_task - before[t.name] for t in todo))
    recorder.planned = budget
    callbacks = [*ms.measure_callback.MeasureCallback.create("default"), recorder]
    with tempfile.TemporaryDirectory(prefix="ember-tune-log-") as work_dir:
        contexts = tune_contexts(todo, tgt, seed)
        log.info("tuning %d tasks: %d trials, at most %d each", len(todo), budget, remaining)
        try:
            ms.tune.tune_tasks(
                tasks=contexts,
                task_weights=[float(t.weight) for t in todo],
                work_dir=work_dir,
                max_trials_global=budget,
                max_trials_per_task=remaining,
                num_trials_per_iter=min(32, remaining),
                builder=builder,
                runner=runner,
                database=database,
                cost_model=cost_model,
                measure_callbacks=callbacks,
            )
        except Exception as err:
            raise TuningError(f"MetaSchedule tuning failed: {err}") from err
    for t in todo:
        if t.symbolic is not None:
            _store_symbolic(t, tgt, database)


def _tuned_trials(database: Any, mod: Any) -> int:
    """Measured (valid) records of `mod` in the database."""
    if not database.has_workload(mod):
        return 0
    return len(database.get_top_k(database.commit_workload(mod), 1 << 20))


def _store_symbolic(task: Task, tgt: Any, database: Any) -> bool:
    """Replay the best schedule of the static kernel onto the symbolic one; store it if it builds."""
    best = database.query_tuning_record(task.mod, tgt, "main")
    if best is None:
        return False
    try:
        sch = tvm.s_tir.Schedule(task.symbolic)
        best.trace.apply_to_schedule(sch, remove_postproc=False)
        tvm.tirx.build(sch.mod, target=tgt)
    except Exception as err:  # static tile sizes that do not fit symbolic extents
        log.info("%s: the tuned schedule does not apply to the symbolic kernel: %s", task.name,
                 str(err).splitlines()[-1] if str(err) else type(err).__name__)  # fmt: skip
        return False
    workload = database.commit_workload(task.symbolic)
    database.commit_tuning_record(
        ms.database.TuningRecord(sch.trace, workload, best.run_secs, tgt, None)
    )
    return True


def _report(task: Task, tgt: Any, spec: dict[str, Any], database: Any, builder: Any, runner: Any,
            trials_before: int, skipped: bool) -> TaskReport:  # fmt: skip
    total = _tuned_trials(database, task.mod)
    best = database.query_schedule(task.mod, tgt, "main")
    tuned = None if best is None else best.mod
    default = _default_schedule(task.mod, spec)
    default_ms, tuned_ms, spread = _remeasure(default, tuned, tgt, builder, runner)
    applies = None
    if task.symbolic is not None:
        applies = database.has_workload(task.symbolic)
    return TaskReport(
        name=task.name,
        weight=task.weight,
        flops=task.flops,
        trials=total - trials_before,
        total_trials=total,
        skipped=skipped,
        default_ms=default_ms,
        tuned_ms=tuned_ms,
        noise=spread,
        hints=dict(task.hints),
        applies_to_symbolic=applies,
    )


def _default_schedule(mod: Any, spec: dict[str, Any]) -> Any:
    from tvm.s_tir import dlight

    copy = tvm.IRModule(dict(mod.functions_items()))  # the pass rewrites its input in place
    with tvm.target.Target(spec):
        return dlight.ApplyDefaultSchedule(*default_schedule_rules(spec))(copy)


def _remeasure(default: Any, tuned: Any | None, tgt: Any, builder: Any,
               runner: Any) -> tuple[float | None, float | None, float]:  # fmt: skip
    """Median ms of the default and tuned kernels, measured in alternating rounds."""
    mods = [default] if tuned is None else [default, tuned]
    built = builder.build([ms.builder.BuilderInput(m, tgt) for m in mods])
    samples: list[list[float]] = [[] for _ in mods]
    saved = runner.config
    runner.config = _REMEASURE
    try:
        for _ in range(_ROUNDS):
            for i, (mod, result) in enumerate(zip(mods, built, strict=True)):
                if result.error_msg is not None:
                    continue
                args_info = ms.arg_info.ArgInfo.from_prim_func(mod["main"])
                inputs = [ms.runner.RunnerInput(result.artifact_path, tgt.kind.name, args_info)]
                outcome = runner.run(inputs)[0].result()
                if outcome.error_msg is None:
                    samples[i].extend(float(s) * 1e3 for s in outcome.run_secs)
    finally:
        runner.config = saved
    medians = [statistics.median(s) if s else None for s in samples]
    return medians[0], medians[1] if tuned is not None else None, noise(samples[-1])
