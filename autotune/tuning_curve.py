"""Tuning curves: the best latency found after each trial, per task and for the whole
model, the trials needed to reach a latency, and a plot that overlays runs (one per cost model).

The whole-model estimate after n trials is sum over tasks of weight x latency, where a task's
latency is the best measured so far (records already in the database count from trial 0) or, for a
task without any, its default schedule's. The per-candidate latencies are those MetaSchedule
records (mean of the samples), so the curve shares their optimism (best of noisy runs); the final
table re-measures. The estimate can rise: a task's first record may be slower than its default
schedule, and builds apply the best record, so the estimate follows it. No TVM here: the callback that feeds `TuningCurve` lives in `tune.py`.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CurvePoint", "TuningCurve", "plot_curves", "trials_to_reach"]

_MAX_TASK_PANELS = 5


@dataclass(frozen=True)
class CurvePoint:
    """The state after one trial: trials so far in this run, the trial's task (None for the
    starting point) and that task's best ms so far, the whole-model estimate in ms, and the trial's
    noise ((max - min) / median of its samples; 0 for a failed candidate)."""

    trials: int
    task: str | None
    task_best_ms: float | None
    model_ms: float | None
    noise: float


@dataclass
class TuningCurve:
    """Collects measured trials during a run; `points()` once the default latencies are known."""

    weights: Mapping[str, int]
    best_ms: dict[str, float] = field(default_factory=dict)  # seeded with the database's bests
    _trials: list[tuple[str, dict[str, float], float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._start = dict(self.best_ms)

    def record(self, task: str, samples_ms: Sequence[Sequence[float]]) -> None:
        """One measured batch of `task`: each candidate's samples in ms, in measurement order
        (empty: a candidate that failed). A candidate's latency is its samples' mean, as in
        MetaSchedule's records."""
        for samples in samples_ms:
            if samples:
                latency = statistics.mean(samples)
                if task not in self.best_ms or latency < self.best_ms[task]:
                    self.best_ms[task] = latency
            self._trials.append((task, dict(self.best_ms), _noise(samples)))

    @property
    def trials(self) -> int:
        """Candidates measured so far."""
        return len(self._trials)

    def points(self, default_ms: Mapping[str, float | None]) -> list[CurvePoint]:
        """The curve from trial 0, with tasks not measured yet counted at `default_ms` (their
        default schedule); a point's model estimate is None while some task has neither."""
        found = [CurvePoint(0, None, None, _model_ms(self.weights, self._start, default_ms), 0.0)]
        for trials, (task, best, noise) in enumerate(self._trials, start=1):
            model_ms = _model_ms(self.weights, best, default_ms)
            found.append(CurvePoint(trials, task, best.get(task), model_ms, noise))
        return found


def _noise(samples: Sequence[float]) -> float:
    if len(samples) < 2:
        return 0.0
    return (max(samples) - min(samples)) / statistics.median(samples)


def _model_ms(
    weights: Mapping[str, int], best: Mapping[str, float], default_ms: Mapping[str, float | None]
) -> float | None:
    total = 0.0
    for task, weight in weights.items():
        latency = best.get(task, default_ms.get(task))
        if latency is None:
            return None
        total += weight * latency
    return total


def trials_to_reach(
    points: Sequence[Mapping[str, Any]], target_ms: float, task: str | None = None
) -> int | None:
    """Trials after which the whole-model estimate (or `task`'s best) is at most `target_ms`;
    None if it never gets there. `points` are CurvePoint dicts (as in the JSON log)."""
    for point in points:
        if task is not None and point["task"] != task:
            continue
        value = point["model_ms"] if task is None else point["task_best_ms"]
        if value is not None and value <= target_ms:
            return int(point["trials"])
    return None


def plot_curves(logs: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Draw best latency vs trials for the whole model and its heaviest tasks, one line per log
    (each a `TuneReport.to_json()` dict: typically one run per cost model), into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t["name"] for t in logs[0]["tasks"]][:_MAX_TASK_PANELS]
    panels = [None, *tasks] if len(tasks) > 1 else tasks
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False)
    graphs = {log["graph"] for log in logs}
    for ax, task in zip(axes.flat, panels, strict=False):
        for log in logs:
            xs, ys = _series(log["curve"], task)
            label = log["cost_model"] if len(graphs) == 1 else f"{log['graph']} {log['cost_model']}"
            if xs:
                ax.step(xs, ys, where="post", label=label, marker="." if len(xs) < 3 else None)
        ax.set_title("whole model (weighted estimate)" if task is None else task[:48], fontsize=9)
        ax.set_xlabel("trials")
        ax.set_ylabel("best latency (ms)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        else:  # a task the budget never reached
            ax.text(0.5, 0.5, "not tuned", ha="center", va="center", transform=ax.transAxes)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(", ".join(sorted(graphs)) + ": best latency vs trials")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _series(points: Sequence[Mapping[str, Any]], task: str | None) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for point in points:
        if task is not None and point["task"] != task:
            continue
        value = point["model_ms"] if task is None else point["task_best_ms"]
        if value is not None:
            xs.append(int(point["trials"]))
            ys.append(float(value))
    return xs, ys
