"""`ember tune`: tune a model's kernels into a tuning database, with a live progress bar, a per-task
table, a JSON log with the tuning curve and a tuning-curve PNG (the logic is in ember.autotune; this
module parses and prints)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ember.errors import UsageError

__all__ = ["add_tune_arguments", "tune_command"]

_COST_MODELS = {"ember": "ember", "tvm-xgb": "xgb", "random": "random"}


def add_tune_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `ember tune` (MODEL, --target and --input-shapes are added by cli.py)."""
    p.add_argument("--trials", type=int, required=True, help="measurements in all")
    p.add_argument(
        "--trials-per-task", type=int, metavar="K", help="at most K measurements per kernel"
    )
    p.add_argument(
        "--tuning-records",
        metavar="DB",
        help="database path or postgresql:// URL (default: tuning.db in ember's cache dir)",
    )
    p.add_argument(
        "--cost-model",
        choices=sorted(_COST_MODELS),
        default="ember",
        help="what ranks candidates: ember's pretrained model (default), TVM's XGBoost, random",
    )
    p.add_argument("--rpc-tracker", metavar="HOST:PORT", help="measure on a device behind it")
    p.add_argument("--rpc-key", metavar="KEY", help="the device key at the RPC tracker")
    p.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="run time limit of one candidate's measurement (queueing never counts; default 10)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        metavar="N",
        help="build in N worker processes and measure in one more (default 2); 0: in this "
        "process, without time limits (a hanging build or kernel hangs the command)",
    )
    p.add_argument(
        "--cache-flush",
        action="store_true",
        help="flush the CPU caches before every timed call (cold-cache latencies)",
    )
    p.add_argument("--log", metavar="FILE.json", help="write the report as JSON (default: none)")
    p.add_argument("--plot", metavar="FILE.png", help="draw best latency vs trials")
    p.add_argument(
        "--compare",
        nargs="+",
        default=[],
        metavar="LOG.json",
        help="--log files of other runs (other cost models) to overlay on --plot",
    )


def tune_command(args: argparse.Namespace) -> int:
    """Run `ember tune`."""
    if args.service:  # tuned by the service's workers: see cli_service.py
        from ember.cli_service import remote_tune

        return remote_tune(args, _ProgressBar())
    from ember.autotune.database import TuningDatabase
    from ember.autotune.measure import Tracker
    from ember.autotune.records import schedule_database
    from ember.autotune.tune import tune
    from ember.model_files import load_model, parse_input_shapes
    from ember.passes import run_pipeline

    if (args.rpc_tracker is None) != (args.rpc_key is None):
        raise UsageError("--rpc-tracker and --rpc-key go together")
    if args.compare and not args.plot:
        raise UsageError("--compare overlays other runs on the --plot PNG: pass --plot FILE.png")
    others = [_read_log(path) for path in args.compare]
    tracker = Tracker.parse(args.rpc_tracker, args.rpc_key) if args.rpc_tracker else None
    source = load_model(args.model, parse_input_shapes(args.input_shapes), {})
    optimized, _ = run_pipeline(source.graph)
    with TuningDatabase.open(args.tuning_records) as db, _ProgressBar() as bar:
        report = tune(
            optimized,
            args.target,
            trials=args.trials,
            trials_per_task=args.trials_per_task,
            database=schedule_database(db, args.target),
            cost_model=_COST_MODELS[args.cost_model],
            tracker=tracker,
            timeout_sec=args.timeout,
            workers=args.workers,
            cache_flush=args.cache_flush,
            progress=bar.update,
        )
        where = db.url
    _print_table(report)
    print(f"records in {where}; build with `ember compile MODEL --tuning-records {where}`")
    log = report.to_json()
    if args.log:
        Path(args.log).write_text(json.dumps(log, indent=1, default=str))
        print(f"wrote {args.log}")
    if args.plot:
        from ember.autotune.tuning_curve import plot_curves

        print(f"wrote {plot_curves([log, *others], args.plot)}")
    return 0


def _read_log(path: str) -> dict[str, Any]:
    try:
        log = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"--compare {path}: not a readable JSON log ({err})") from err
    if not isinstance(log, dict) or "curve" not in log or "tasks" not in log:
        raise UsageError(f"--compare {path}: not an `ember tune --log` file (no tuning curve)")
    return log


class _ProgressBar:
    """A tqdm bar over measured trials, created at the first update (its total is known then)."""

    def __init__(self) -> None:
        self._bar: Any = None

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def update(self, measured: int, planned: int) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=planned, unit="trial", desc="tuning", dynamic_ncols=True)
        self._bar.update(measured - self._bar.n)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _print_table(report: Any) -> None:
    print(
        f"{'task':<40} {'calls':>5} {'trials':>6} {'default ms':>10} {'tuned ms':>10} "
        f"{'speedup':>7} {'GFLOP/s':>8} {'noise':>6}"
    )
    for t in report.tasks:
        speedup = f"{t.default_ms / t.tuned_ms:.2f}x" if t.default_ms and t.tuned_ms else "-"
        gflops = "-" if t.gflops is None else f"{t.gflops:.1f}"
        note = " (already tuned)" if t.skipped else ""
        if t.hints:
            sizes = ", ".join(f"{k}={v}" for k, v in t.hints.items())
            kept = "uses it" if t.applies_to_symbolic else "keeps the default schedule"
            note += f" (tuned at {sizes}; the symbolic kernel {kept})"
        print(
            f"{t.name[:40]:<40} {t.weight:>5} {t.total_trials:>6} {_ms(t.default_ms):>10} "
            f"{_ms(t.tuned_ms):>10} {speedup:>7} {gflops:>8} {t.noise:>6.0%}{note}"
        )
    print(
        f"{sum(t.trials for t in report.tasks)} trials in {report.seconds:.0f} s "
        f"({report.cost_model} cost model); latencies are re-measured medians"
    )
    if report.model_ms is not None:
        print(f"whole model (sum of calls x latency): {report.model_ms:.4f} ms")
