"""Cost-model ranking quality on held-out kernels: ember's model vs TVM's XGBModel vs random.

    python benchmarks/cost_model.py [--data DIR] [--out bench-results/cost_model.jsonl]

Data: the measurements `python -m ember.autotune.train_cost_model` collected (random points of
each kernel's MetaSchedule design space plus ember's default schedule, timed on this CPU). Both
models are trained here on the same training kernels: ember's with its own trainer (as shipped),
TVM's `XGBModel` through its `update()` API, one call per training kernel. Both then score every
held-out kernel's candidates through MetaSchedule's `CostModel.predict`, from the same replayed
schedules; random scores are averaged over 200 draws.

Metrics per held-out kernel, averaged over kernels (failed candidates excluded):
- pairwise accuracy: pairs whose latencies differ by more than 5%, ordered correctly;
- top-k recall: the share of the true k fastest among the model's k best-scored (k = 1, 5, 10);
- best-of-top-k: latency of the best among the model's top k over the true best (1.00 = found).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _harness import environment

from ember.autotune.cost_model import EmberCostModel
from ember.autotune.train_cost_model import (
    data_dir,
    load_index,
    load_samples,
    records_by_kernel,
    replay,
    train,
)
from ember.autotune.zero_shot import default_candidate

KS = (1, 5, 10)
_TIE = 1.05
_RANDOM_DRAWS = 200


def pairwise_accuracy(seconds: np.ndarray, scores: np.ndarray) -> float:
    """Share of clearly ordered pairs (latency ratio > 1.05) whose scores agree; ties count half.
    NaN when no pair is clearly ordered (left out of the averages)."""
    faster = seconds[:, None] * _TIE < seconds[None, :]
    higher = scores[:, None] > scores[None, :]
    equal = scores[:, None] == scores[None, :]
    pairs = faster.sum()
    if not pairs:
        return float("nan")
    return float(((faster & higher).sum() + 0.5 * (faster & equal).sum()) / pairs)


def top_k_recall(seconds: np.ndarray, scores: np.ndarray, k: int) -> float:
    k = min(k, len(seconds))
    true = set(np.argsort(seconds, kind="stable")[:k].tolist())
    predicted = set(np.argsort(-scores, kind="stable")[:k].tolist())
    return len(true & predicted) / k


def best_of_top_k(seconds: np.ndarray, scores: np.ndarray, k: int) -> float:
    chosen = np.argsort(-scores, kind="stable")[:k]
    return float(seconds[chosen].min() / seconds.min())


def metrics(seconds: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    result = {"pairwise": pairwise_accuracy(seconds, scores)}
    for k in KS:
        result[f"recall@{k}"] = top_k_recall(seconds, scores, k)
        result[f"best@{k}"] = best_of_top_k(seconds, scores, k)
    return result


def _held_out(directory: Path) -> list[tuple[str, Any, list[Any], np.ndarray]]:
    """(name, context, candidates, seconds) per held-out kernel, default schedule included."""
    index = load_index(directory)
    kernels = []
    for key, records in records_by_kernel(directory):
        if not index[key]["held_out"]:
            continue
        context, candidates, seconds = replay(records)
        candidates.append(default_candidate(context.mod, index[key]["target"]))
        seconds = np.append(seconds, index[key]["default_seconds"])
        ok = seconds < 1e9
        name = f"{index[key]['name']} @{key.split('@')[1]}"
        kernels.append((name, context, [c for c, v in zip(candidates, ok, strict=True) if v],
                        seconds[ok]))  # fmt: skip
    return kernels


def _tvm_xgb(directory: Path) -> Any:
    """TVM's XGBModel fed every training kernel's measurements through `update()`."""
    from tvm.s_tir import meta_schedule as ms

    index = load_index(directory)
    model = ms.cost_model.XGBModel(num_warmup_samples=0, adaptive_training=True)
    training = [(k, r) for k, r in records_by_kernel(directory) if not index[k]["held_out"]]
    for i, (_, records) in enumerate(training):
        context, candidates, seconds = replay(records)
        results = [ms.runner.RunnerResult([float(s)], None) for s in seconds]
        if i == len(training) - 1:
            model.last_train_size = 0  # adaptive training may skip a round: train on all data
        model.update(context, candidates, results)
    return model


def _score(models: dict[str, Callable[[Any, list[Any]], np.ndarray]],
           kernels: list[tuple[str, Any, list[Any], np.ndarray]]) -> dict[str, list[dict[str, float]]]:  # fmt: skip
    table: dict[str, list[dict[str, float]]] = {name: [] for name in models}
    rng = np.random.default_rng(0)
    for _, context, candidates, seconds in kernels:
        for name, predict in models.items():
            if name == "random":
                draws = [metrics(seconds, rng.random(len(seconds))) for _ in range(_RANDOM_DRAWS)]
                table[name].append({m: float(np.nanmean([d[m] for d in draws])) for m in draws[0]})
            else:
                table[name].append(metrics(seconds, np.asarray(predict(context, candidates))))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("bench-results/cost_model.jsonl"))
    args = parser.parse_args()
    directory = args.data or data_dir()
    samples = load_samples(directory)
    start = time.perf_counter()
    ember_model = EmberCostModel({"kind": "llvm"}, train(samples, args.rounds))
    ember_s = time.perf_counter() - start
    start = time.perf_counter()
    tvm_model = _tvm_xgb(directory)
    tvm_s = time.perf_counter() - start
    kernels = _held_out(directory)
    models = {"ember": ember_model.predict, "tvm-xgb": tvm_model.predict, "random": None}
    table = _score(models, kernels)  # type: ignore[arg-type]
    train_kernels = sum(not s.held_out for s in samples)
    candidates = sum(len(k[3]) for k in kernels)
    print(f"training: {train_kernels} kernels; held out: {len(kernels)} kernels, "
          f"{candidates} candidates; training time ember {ember_s:.1f} s, "
          f"tvm-xgb {tvm_s:.1f} s")  # fmt: skip
    names = list(table["ember"][0])
    print(f"{'model':<10}" + "".join(f"{n:>11}" for n in names))
    for model, rows in table.items():
        print(f"{model:<10}" + "".join(f"{np.nanmean([r[n] for r in rows]):>11.3f}" for n in names))
    print("\nper held-out kernel (pairwise accuracy / best@1): ember | tvm-xgb | random")
    for i, (name, *_rest) in enumerate(kernels):
        cells = " | ".join(f"{table[m][i]['pairwise']:.2f} / {table[m][i]['best@1']:.2f}"
                           for m in table)  # fmt: skip
        print(f"  {name:<44} {cells}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        for model, rows in table.items():
            summary = {n: float(np.nanmean([r[n] for r in rows])) for n in names}
            f.write(json.dumps({"case": "ranking", "model": model, **summary,
                                "kernels": [k[0] for k in kernels], **environment()}) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
