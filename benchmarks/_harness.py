"""Shared timing harness for benchmarks/: warmup, repeats, median/p10/p90, ratio tables, JSON lines.

    stats = compare({"ember": run_ember, "torch": run_torch}, warmup=5, repeat=50)
    rows.append(Row("matmul", "256x256x256", stats))
    print_table(rows, baseline="torch")
    write_jsonl(rows, "bench-results/kernels.jsonl", env=environment())

`compare` interleaves the implementations (one call of each per round), so load from other
processes on a shared machine hits every implementation alike and the ratios stay meaningful.
Importing it sizes TVM's thread pool to the physical cores (`ember.runtime.threads`) before any
kernel runs, so TVM baselines and ember use the same cores whichever runs first.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ember.runtime.threads import size_thread_pool

size_thread_pool()

_SETTLE_S = 0.01  # pause between blocks so the previous implementation's spinning threads sleep

__all__ = ["Row", "Stats", "compare", "environment", "measure", "print_table", "write_jsonl"]


@dataclass(frozen=True)
class Stats:
    """Wall-clock times of one implementation, in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    repeat: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Stats:
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        p10, median, p90 = np.percentile(ms, [10, 50, 90])
        return cls(float(median), float(p10), float(p90), len(ms))


@dataclass(frozen=True)
class Row:
    """One benchmark case: its name, a shape description and the stats of each implementation."""

    case: str
    shape: str
    stats: Mapping[str, Stats]
    dtype: str = "float32"
    extra: Mapping[str, Any] = field(default_factory=dict)


def measure(
    fn: Callable[[], Any], *, warmup: int = 5, repeat: int = 50, budget_s: float | None = None
) -> Stats:
    """Time `fn()` `repeat` times after `warmup` untimed calls."""
    return compare({"fn": fn}, warmup=warmup, repeat=repeat, budget_s=budget_s)["fn"]


def compare(
    fns: Mapping[str, Callable[[], Any]],
    *,
    warmup: int = 5,
    repeat: int = 50,
    budget_s: float | None = None,
    rounds: int = 5,
) -> dict[str, Stats]:
    """Time several implementations of one case, in `rounds` interleaved blocks of calls.

    Interleaving blocks rather than single calls spreads background load over every
    implementation while letting each one's thread pool (TVM's, torch's OpenMP) settle: pools
    spin after a parallel region, and alternating call by call makes them fight over the cores.
    With `budget_s`, fewer calls (at least 5 per implementation) are timed when `repeat` would
    take longer.
    """
    round_s = 0.0
    for fn in fns.values():
        for i in range(warmup):
            start = time.perf_counter()
            fn()
            if i == warmup - 1:
                round_s += time.perf_counter() - start
    if budget_s is not None and round_s > 0:
        repeat = max(5, min(repeat, int(budget_s / round_s)))
    rounds = max(1, min(rounds, repeat))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        block = repeat // rounds + (1 if r < repeat % rounds else 0)
        for name, fn in fns.items():
            time.sleep(_SETTLE_S)
            fn()  # untimed: wakes this implementation's threads
            for _ in range(block):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: Stats.of(t) for name, t in times.items()}


def print_table(rows: Sequence[Row], *, baseline: str) -> None:
    """A fixed-width table: median [p10-p90] per implementation and its ratio to `baseline`."""
    impls = list(dict.fromkeys(name for row in rows for name in row.stats))
    head = f"{'case':<14} {'shape':<26}" + "".join(f" {name:>24}" for name in impls)
    print(head)
    print("-" * len(head))
    for row in rows:
        base = row.stats.get(baseline)
        cells = []
        for name in impls:
            s = row.stats.get(name)
            if s is None:
                cells.append(f" {'-':>24}")
                continue
            ratio = (
                f" x{s.median_ms / base.median_ms:.2f}"
                if base is not None and name != baseline
                else ""
            )
            cells.append(f" {f'{s.median_ms:.3f}ms{ratio}':>24}")
        print(f"{row.case:<14} {row.shape:<26}" + "".join(cells))
    print(f"(median of the repeats; xN = time / {baseline} time, lower is better)")


def environment() -> dict[str, Any]:
    """Versions, CPU and commit, recorded with every measurement."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu": _cpu_name(),
        "tvm_threads": os.environ.get("TVM_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS"),
        "commit": _git_commit(),
    }
    for module in ("numpy", "torch", "tvm"):
        try:
            env[module] = __import__(module).__version__
        except ImportError:
            env[module] = None
    return env


def write_jsonl(
    rows: Sequence[Row], path: str | Path, *, env: Mapping[str, Any], target: str = ""
) -> None:
    """Append one JSON line per (case, implementation) measurement."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        for row in rows:
            for impl, stats in row.stats.items():
                record = {"case": row.case, "shape": row.shape, "dtype": row.dtype, "impl": impl}
                record |= {"target": target, **asdict(stats), **dict(row.extra), "env": dict(env)}
                f.write(json.dumps(record) + "\n")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()
