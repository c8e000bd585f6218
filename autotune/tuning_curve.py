"""Tuning curves: the best latency found after each batch of trials, per task and for the whole
model, the trials needed to reach a latency, and a plot that overlays runs (one per cost model).

The whole-model estimate after n trials is sum over tasks of weight x latency, where a task's
latency is the best measured so far (records already in the database count from trial 0) or, for a
task without any, its default schedule's. The per-candidate latencies are those MetaSchedule
records (mean of the samples), so the curve shares their optimism (best of noisy runs); the final
table re-measures. No TVM here: the callback that feeds `TuningCurve` lives in `tune.py`.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CurvePoint", "TuningCurve", "batch_noise", "plot_curves", "trials_to_reach"]

_MAX_TASK_PANELS = 5


@dataclass(frozen=True)
class CurvePoint:
    """The state after one measured batch: trials so far in this run, the batch's task and its
    best ms, the whole-model estimate in ms, and the batch's median noise ((max-min)/median)."""

    trials: int
    task: str
    task_best_ms: float | None
    model_ms: float | None
    noise: float


@dataclass
class TuningCurve:
    """Collects measured batches during a run; `points()` once the default latencies are known."""

    weights: Mapping[str, int]
    best_ms: dict[str, float] = field(default_factory=dict)  # seeded with the database's bests
    _batches: list[tuple[int, str, dict[str, float], float]] = field(default_factory=list)
    _trials: int = 0

    def record(self, task: str, latencies_ms: Sequence[float | None], noise: float) -> None:
        """One measured batch of `task` (None: a candidate that failed)."""
        self._trials += len(latencies_ms)
        valid = [x for x in latencies_ms if x is not None]
        if valid and (task not in self.best_ms or min(valid) < self.best_ms[task]):
            self.best_ms[task] = min(valid)
        self._batches.append((self._trials, task, dict(self.best_ms), noise))

    @property
    def trials(self) -> int:
        """Candidates measured so far."""
        return self._trials

    def points(self, default_ms: Mapping[str, float | None]) -> list[CurvePoint]:
        """The curve, with tasks not measured yet counted at `default_ms` (their default
        schedule); a point's model estimate is None while some task has neither."""
        found = []
        for trials, task, best, noise in self._batches:
            found.append(
                CurvePoint(
                    trials, task, best.get(task), _model_ms(self.weights, best, default_ms), noise
                )
            )
        return found


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


def batch_noise(samples: Sequence[Sequence[float]]) -> float:
    """Median over candidates of (max - min) / median of each candidate's samples."""
    spreads = [(max(s) - min(s)) / statistics.median(s) for s in samples if len(s) > 1]
    return statistics.median(spreads) if spreads else 0.0


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
                ax.step(xs, ys, where="post", label=label)
        ax.set_title("whole model (weighted estimate)" if task is None else task[:48], fontsize=9)
        ax.set_xlabel("trials")
        ax.set_ylabel("best latency (ms)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
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
