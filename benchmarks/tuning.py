"""Tuning benchmark, all in one run: TVM untuned, ember's default schedules, ember zero-shot, ember
tuned with each cost model (ember's, TVM's XGBoost, random) at several trial budgets, and torch
eager, on kernels and small models; ratios, tuning curves and trials-to-90%-of-best.

    python -m benchmarks.tuning                                  # every case, budgets 64,256
    python -m benchmarks.tuning --cases matmul256,mlp --budgets 64,256,1024
    python -m benchmarks.tuning --cost-models ember,xgb --out-dir bench-results/tuning

Cases go through the production path: torch module -> ember import -> pass pipeline ->
`codegen.build` (`schedule=False` is TVM's untuned default; `zero_shot=` ember's zero-shot pick by
the pretrained cost model, every kernel) -> `runtime.Executor`. Each cost model tunes once, for the
largest budget, into its own MetaSchedule memory database; "tuned@B" builds with the first B
records of that run (the search is the same up to B trials: the global budget only stops it), so
the tuned latencies at every budget are real end-to-end measurements. Every implementation's output
is checked against torch before it is timed. Latencies: harness medians, interleaved rounds.

Per cost model: the tuning curve (best whole-model estimate vs trials, from the measurements the
search made: optimistic, the min of noisy runs) and the trials it needed to reach 90% of the best
latency any cost model found (latency <= best / 0.9). Curves go to <out-dir>/<case>-curve.png and
the tune logs to <out-dir>/<case>-<cost model>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._harness import Row, compare, environment, print_table, write_jsonl

COST_MODELS = ("ember", "xgb", "random")


@dataclass(frozen=True)
class Case:
    """A torch module and its inputs; `gemm` marks the GEMM-heavy cases (zero-shot target).
    `graph` builds ember's graph of the module where the torch importer has no converter."""

    name: str
    shape: str
    make: Callable[[], tuple[Any, tuple[Any, ...]]]
    gemm: bool = False
    graph: Callable[[Any], Any] | None = None


def _matmul(n: int) -> tuple[Any, tuple[Any, ...]]:
    import torch

    class MatMul(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a @ b

    g = torch.Generator().manual_seed(0)
    return MatMul(), (torch.randn(n, n, generator=g), torch.randn(n, n, generator=g))


def _conv2d() -> tuple[Any, tuple[Any, ...]]:
    import torch

    torch.manual_seed(0)
    return torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).eval(), (torch.randn(1, 64, 56, 56),)


def _conv2d_graph(conv: Any) -> Any:
    """ember's graph of `conv`: the torch importer has no aten.convolution converter yet."""
    from ember.ir import Builder, ops

    b = Builder()
    w = b.const(conv.weight.detach().numpy())
    op = ops.Conv(strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1))
    b.output(b.emit(op, b.input((1, 64, 56, 56), "float32", "x"), w))
    return b.build()


def _attention() -> tuple[Any, tuple[Any, ...]]:
    import torch

    class Attention(torch.nn.Module):
        def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            scores = (q @ k.transpose(-1, -2)) / 8.0
            return scores.softmax(-1) @ v

    g = torch.Generator().manual_seed(0)
    return Attention(), tuple(torch.randn(1, 4, 128, 64, generator=g) for _ in range(3))


def _layer_norm() -> tuple[Any, tuple[Any, ...]]:
    import torch

    torch.manual_seed(0)
    return torch.nn.LayerNorm(256).eval(), (torch.randn(8, 128, 256),)


def _mlp() -> tuple[Any, tuple[Any, ...]]:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 256)
    ).eval()
    return model, (torch.randn(32, 256),)


def _zoo(name: str) -> Callable[[], tuple[Any, tuple[Any, ...]]]:
    def make() -> tuple[Any, tuple[Any, ...]]:
        from examples.zoo import build

        model, ids = build(name, batch=1, seq=32)
        return model, (ids,)

    return make


CASES = (
    Case("matmul256", "256x256x256", partial(_matmul, 256), gemm=True),
    Case("matmul1024", "1024x1024x1024", partial(_matmul, 1024), gemm=True),
    Case("conv2d", "1x64x56x56, 64 3x3", _conv2d, graph=_conv2d_graph),
    Case("attention", "1x4x128x64 sdpa", _attention),
    Case("layernorm", "8x128x256", _layer_norm),
    Case("mlp", "32x256->1024->256", _mlp, gemm=True),
    Case("llama", "tiny, 1x32 tokens", _zoo("llama"), gemm=True),
    Case("bert", "tiny, 1x32 tokens", _zoo("bert"), gemm=True),
)


def _first(out: Any) -> np.ndarray:
    if isinstance(out, list | tuple):
        return _first(out[0])
    for field in ("logits", "last_hidden_state"):
        if hasattr(out, field):
            return _first(getattr(out, field))
    return out.detach().numpy() if hasattr(out, "detach") else np.asarray(out.numpy())


def _executor(graph: Any, arrays: list[np.ndarray], expected: np.ndarray,
              **options: Any) -> Callable[[], Any]:  # fmt: skip
    """Build `graph`, check its output against `expected`, and return a timed call."""
    import tvm

    from ember.codegen.build import build
    from ember.runtime import Executor

    executor = Executor(build(graph, "llvm", **options).executable)
    args = [tvm.runtime.tensor(a) for a in arrays]
    got = executor.run(args)[0].numpy()
    error = float(np.abs(got - expected).max() / max(float(np.abs(expected).max()), 1e-12))
    if not error < 1e-3:
        raise RuntimeError(f"output differs from torch (max relative error {error:.1e})")
    return lambda: executor.run(args)


def _prefix(database: Any, count: int) -> Any:
    """A memory database holding the first `count` records of `database` (commit order)."""
    from tvm.s_tir import meta_schedule as ms

    prefix = ms.database.MemoryDatabase()
    for record in list(database.get_all_tuning_records())[:count]:
        workload = prefix.commit_workload(record.workload.mod)
        prefix.commit_tuning_record(
            ms.database.TuningRecord(
                record.trace, workload, record.run_secs, record.target, record.args_info
            )
        )
    return prefix


def _tune(graph: Any, cost_model: str, budget: int, workers: int) -> tuple[Any, dict[str, Any]]:
    from tvm.s_tir import meta_schedule as ms

    from ember.autotune.tune import tune

    database = ms.database.MemoryDatabase()
    report = tune(graph, "llvm", trials=budget, database=database, cost_model=cost_model,
                  workers=workers)  # fmt: skip
    return database, report.to_json()


def run_case(case: Case, args: argparse.Namespace, out_dir: Path) -> tuple[Row, list[dict]]:
    """Build, tune, check and time every implementation of one case."""
    import torch

    from ember.frontend.torch import import_module
    from ember.passes import run_pipeline

    model, inputs = case.make()
    with torch.inference_mode():
        expected = _first(model(*inputs))
    imported = case.graph(model) if case.graph else import_module(model, inputs).graph
    graph, _ = run_pipeline(imported)
    arrays = [x.numpy() for x in inputs]
    build = partial(_executor, graph, arrays, expected)
    fns: dict[str, Callable[[], Any]] = {}
    notes: dict[str, str] = {}
    extra: dict[str, Any] = {"tune_s": {}, "notes": notes}
    _add(fns, notes, "tvm-untuned", lambda: build(schedule=False))
    _add(fns, notes, "ember-default", build)
    _add(fns, notes, "zero-shot", lambda: build(zero_shot=_zero_shot()))
    logs = []
    for cost_model in args.cost_models:
        start = time.perf_counter()
        try:
            database, log = _tune(graph, cost_model, max(args.budgets), args.workers)
        except Exception as err:  # a cost model that cannot run is reported, not fatal
            notes[cost_model] = f"tuning failed: {type(err).__name__}: {str(err)[:160]}"
            continue
        extra["tune_s"][cost_model] = round(time.perf_counter() - start, 1)
        (out_dir / f"{case.name}-{cost_model}.json").write_text(json.dumps(log, default=str))
        logs.append(log)
        for budget in args.budgets:
            _add(fns, notes, f"{cost_model}@{budget}",
                 lambda b=budget, d=database: build(database=_prefix(d, b)))  # fmt: skip
    with torch.inference_mode():
        fns["torch"] = lambda: model(*inputs)
        stats = compare(fns, warmup=3, repeat=args.repeat, budget_s=args.budget)
    return Row(case.name, case.shape, stats, extra=extra), logs


def _zero_shot() -> Any:
    from ember.autotune.zero_shot import zero_shot_schedules

    return partial(zero_shot_schedules, kernels="all")


def _add(fns: dict[str, Callable[[], Any]], notes: dict[str, str], name: str,
         make: Callable[[], Callable[[], Any]]) -> None:  # fmt: skip
    try:
        fns[name] = make()
    except Exception as err:  # an implementation that fails to build or is wrong is reported
        notes[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"


def summarize_curves(case: str, logs: list[dict], budgets: list[int]) -> list[str]:
    """Trials to 90% of the best latency per cost model, and ember vs TVM-XGB's best."""
    from ember.autotune.tuning_curve import trials_to_reach

    finals = [_last(log["curve"]) for log in logs]
    found = [f for f in finals if f is not None]
    if not found:
        return [f"{case}: no tuning curve"]
    best = min(found)
    lines = [f"{case}: best whole-model estimate {best:.4f} ms (during tuning, all cost models)"]
    for log, final in zip(logs, finals, strict=True):
        reach = trials_to_reach(log["curve"], best / 0.9)
        lines.append(
            f"  {log['cost_model']:<7} final {_fmt(final)} ms; trials to 90% of best: "
            f"{reach if reach is not None else 'not reached'}"
        )
    by_model = {log["cost_model"]: log for log in logs}
    if "ember" in by_model and "xgb" in by_model:
        reference = max(b for b in budgets if b <= 256) if min(budgets) <= 256 else min(budgets)
        xgb_best = _last(by_model["xgb"]["curve"], reference)
        if xgb_best is not None:
            reach = trials_to_reach(by_model["ember"]["curve"], xgb_best)
            lines.append(
                f"  ember reaches TVM-XGB's {reference}-trial best ({xgb_best:.4f} ms) in "
                f"{reach if reach is not None else 'more than ' + str(max(budgets))} trials"
            )
    return lines


def _last(points: list[dict], trials: int | None = None) -> float | None:
    values = [p["model_ms"] for p in points
              if p["model_ms"] is not None and (trials is None or p["trials"] <= trials)]  # fmt: skip
    return values[-1] if values else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", default=",".join(c.name for c in CASES))
    parser.add_argument("--budgets", default="64,256", help="trial budgets, e.g. 64,256,1024")
    parser.add_argument(
        "--cost-models", default=",".join(COST_MODELS), help="'' to skip tuning (baselines only)"
    )
    parser.add_argument("--workers", type=int, default=2, help="build workers (0: in-process)")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--budget", type=float, default=10.0, help="max seconds of timing per case")
    parser.add_argument("--out-dir", default="bench-results/tuning")
    parser.add_argument(
        "--threads",
        type=int,
        help="threads for TVM (measurement during tuning included) and torch (default: all "
        "cores); 1 is steadier on a loaded machine, where spinning thread pools stall each other",
    )
    args = parser.parse_args()
    if args.threads:
        import torch

        os.environ["TVM_NUM_THREADS"] = str(args.threads)  # read when TVM's pool starts
        torch.set_num_threads(args.threads)
    args.budgets = sorted(int(b) for b in args.budgets.split(","))
    args.cost_models = [m for m in args.cost_models.split(",") if m]
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = [c for c in CASES if c.name in args.cases.split(",")]
    rows, summary = [], []
    for case in chosen:
        start = time.perf_counter()
        row, logs = run_case(case, args, out_dir)
        rows.append(row)
        if logs:
            from ember.autotune.tuning_curve import plot_curves

            plot_curves(logs, out_dir / f"{case.name}-curve.png")
            summary += summarize_curves(case.name, logs, args.budgets)
        print(f"  done {case.name} in {time.perf_counter() - start:.0f} s: "
              f"tune s {row.extra['tune_s']} {row.extra['notes'] or ''}", flush=True)  # fmt: skip
        write_jsonl([row], out_dir / "tuning.jsonl", env=environment(), target="llvm")
    env = environment()
    print(f"# {env['cpu']}, {env['cpus']} cpus, tvm {env['tvm']}, torch {env['torch']}, "
          f"commit {env['commit']}; threads {args.threads or env['cpus']}; budgets "
          f"{args.budgets}; cost models {args.cost_models}")  # fmt: skip
    print_table(rows, baseline="torch")
    _print_ratios(rows)
    print("\n".join(summary))


def _print_ratios(rows: list[Row]) -> None:
    """The issue's targets, as ratios: tuned/torch, zero-shot speedup over TVM untuned."""
    for row in rows:
        s = row.stats
        tuned = {k: v.median_ms for k, v in s.items() if "@" in k}
        parts = []
        if tuned and "torch" in s:
            name = min(tuned, key=tuned.__getitem__)
            parts.append(
                f"best tuned {name}: {s['torch'].median_ms / tuned[name]:.2f}x torch speed"
            )
        if "zero-shot" in s and "tvm-untuned" in s:
            speedup = s["tvm-untuned"].median_ms / s["zero-shot"].median_ms
            parts.append(f"zero-shot {speedup:.1f}x faster than TVM untuned")
        if "ember-default" in s and "tvm-untuned" in s:
            speedup = s["tvm-untuned"].median_ms / s["ember-default"].median_ms
            parts.append(f"ember default {speedup:.1f}x faster than TVM untuned")
        parts += _ember_vs_xgb(s)
        print(f"{row.case:<11} " + "; ".join(parts))


def _ember_vs_xgb(stats: dict[str, Any]) -> list[str]:
    """The fewest trials after which ember's build is as fast as TVM-XGB's at its largest budget
    up to 256, end to end (the tuning curves' latencies are measured at other times, under other
    load)."""
    budgets = sorted(int(k.split("@")[1]) for k in stats if k.startswith("xgb@"))
    if not budgets:
        return []
    reference = max((b for b in budgets if b <= 256), default=budgets[0])
    xgb_ms = stats[f"xgb@{reference}"].median_ms
    ember = sorted(int(k.split("@")[1]) for k in stats if k.startswith("ember@"))
    if not ember:
        return []
    reached = [b for b in ember if stats[f"ember@{b}"].median_ms <= xgb_ms]
    when = f"at {reached[0]} trials" if reached else f"not within {ember[-1]} trials"
    return [f"ember as fast as xgb@{reference} end to end {when}"]


if __name__ == "__main__":
    main()
