"""Cost-model ranking quality on held-out kernels: ember's model vs TVM's XGBModel vs random.

    python benchmarks/cost_model.py [--data DIR] [--unseen-target haswell-2]
        [--model old=/tmp/cost_model.ubj] [--out bench-results/cost_model.jsonl]

Data: the measurements `python -m ember.autotune.train_cost_model` collected for one or more
targets (random points of each kernel's MetaSchedule design space plus ember's default schedule,
timed on this CPU as code for each target's `mcpu`). The models are trained here on the same
training kernels of every target except the `--unseen-target`s: ember's with its own trainer (as
shipped), the same with the target features held constant (`ember-blind`: what the data alone
gives, without knowing the target), and TVM's `XGBModel` through its `update()` API, one call per
training kernel and target. They, the shipped model and any `--model`, score every held-out
kernel's candidates on every target through MetaSchedule's `CostModel.predict`, from the same
replayed schedules; random scores are averaged over 200 draws. Results are per target: a target
is "seen" when its training kernels were trained on, "unseen" otherwise (transfer to a new CPU).

Metrics per held-out kernel, averaged over kernels (failed candidates excluded):
- pairwise accuracy: pairs whose latencies differ by more than 5%, ordered correctly (averaged
  over kernels, and "pooled": over all pairs of a target's kernels, so that a kernel with one
  clear pair does not weigh as much as one with hundreds);
- top-k recall: the share of the true k fastest among the model's k best-scored (k = 1, 5, 10);
- best-of-top-k: latency of the best among the model's top k over the true best (1.00 = found).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _harness import environment

from ember.autotune.cost_model import (
    EmberCostModel,
    feature_names,
    load_pretrained,
    pretrained_path,
    target_split_counts,
)
from ember.autotune.target_features import FEATURE_NAMES
from ember.autotune.train_cost_model import (
    Sample,
    data_dir,
    load_index,
    load_samples,
    records_by_kernel,
    replay,
    target_label,
    train,
)
from ember.autotune.zero_shot import default_candidate

KS = (1, 5, 10)
_TIE = 1.05
_RANDOM_DRAWS = 200


def ordered_pairs(seconds: np.ndarray, scores: np.ndarray) -> tuple[float, int]:
    """(pairs the scores order like the latencies, ties counting half; clearly ordered pairs:
    latency ratio > 1.05)."""
    faster = seconds[:, None] * _TIE < seconds[None, :]
    higher = scores[:, None] > scores[None, :]
    equal = scores[:, None] == scores[None, :]
    return float((faster & higher).sum() + 0.5 * (faster & equal).sum()), int(faster.sum())


def pairwise_accuracy(seconds: np.ndarray, scores: np.ndarray) -> float:
    """Share of clearly ordered pairs whose scores agree; NaN when no pair is clearly ordered
    (left out of the averages)."""
    agree, pairs = ordered_pairs(seconds, scores)
    return agree / pairs if pairs else float("nan")


def top_k_recall(seconds: np.ndarray, scores: np.ndarray, k: int) -> float:
    k = min(k, len(seconds))
    true = set(np.argsort(seconds, kind="stable")[:k].tolist())
    predicted = set(np.argsort(-scores, kind="stable")[:k].tolist())
    return len(true & predicted) / k


def best_of_top_k(seconds: np.ndarray, scores: np.ndarray, k: int) -> float:
    chosen = np.argsort(-scores, kind="stable")[:k]
    return float(seconds[chosen].min() / seconds.min())


def metrics(seconds: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    agree, pairs = ordered_pairs(seconds, scores)
    result = {"pairwise": agree / pairs if pairs else float("nan"), "agree": agree, "pairs": pairs}
    for k in KS:
        result[f"recall@{k}"] = top_k_recall(seconds, scores, k)
        result[f"best@{k}"] = best_of_top_k(seconds, scores, k)
    return result


Kernel = tuple[str, str, Any, list[Any], np.ndarray]  # name, target label, context, candidates, s


def _held_out(directory: Path) -> list[Kernel]:
    """(name, target, context, candidates, seconds) per held-out kernel and target, default
    schedule included."""
    index = load_index(directory)
    kernels = []
    for key, records in records_by_kernel(directory):
        if not index[key]["held_out"]:
            continue
        context, candidates, seconds = replay(records)
        candidates.append(default_candidate(context.mod, index[key]["target"]))
        seconds = np.append(seconds, index[key]["default_seconds"])
        ok = seconds < 1e9
        kernels.append((index[key]["name"], target_label(index[key]["target"]), context,
                        [c for c, v in zip(candidates, ok, strict=True) if v], seconds[ok]))  # fmt: skip
    return kernels


def _blind(samples: list[Sample]) -> list[Sample]:
    """`samples` with every target feature set to 0: a model trained on them cannot tell targets
    apart (the trees never split on a constant), whatever target it is later asked about."""
    columns = [feature_names().index(name) for name in FEATURE_NAMES]
    blind = []
    for sample in samples:
        features = sample.features.copy()
        features[:, columns] = 0
        blind.append(replace(sample, features=features))
    return blind


def _tvm_xgb(directory: Path, unseen: list[str]) -> Any:
    """TVM's XGBModel fed every training kernel's measurements (each target's in its own
    `update()` call; it groups by kernel only) and trained once on all of them."""
    from tvm.s_tir import meta_schedule as ms

    index = load_index(directory)
    model = ms.cost_model.XGBModel(num_warmup_samples=0, adaptive_training=True)
    training = [
        records
        for key, records in records_by_kernel(directory)
        if not index[key]["held_out"] and target_label(index[key]["target"]) not in unseen
    ]
    for i, records in enumerate(training):
        context, candidates, seconds = replay(records)
        results = [ms.runner.RunnerResult([float(s)], None) for s in seconds]
        # adaptive training skips a round while the data grew by less than a fifth: skip all
        # but the last, which trains on everything (what the last of the calls would do anyway)
        model.last_train_size = 0 if i == len(training) - 1 else 10**9
        model.update(context, candidates, results)
    return model


def _score(models: dict[str, Callable[[Any, list[Any]], np.ndarray] | None],
           kernels: list[Kernel]) -> dict[str, list[dict[str, float]]]:  # fmt: skip
    table: dict[str, list[dict[str, float]]] = {name: [] for name in models}
    rng = np.random.default_rng(0)
    for _, _, context, candidates, seconds in kernels:
        for name, predict in models.items():
            if predict is None:  # random
                draws = [metrics(seconds, rng.random(len(seconds))) for _ in range(_RANDOM_DRAWS)]
                table[name].append({m: float(np.nanmean([d[m] for d in draws])) for m in draws[0]})
            else:
                table[name].append(metrics(seconds, np.asarray(predict(context, candidates))))
    return table


def _splits(booster: Any) -> str:
    counts = {name: n for name, n in target_split_counts(booster).items() if n}
    total = sum(booster.get_score(importance_type="weight").values())
    return f"{sum(counts.values())} of {int(total)} splits on the target: {counts or 'none'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument(
        "--unseen-target",
        action="append",
        default=[],
        metavar="LABEL",
        help="train on no kernel of this target, e.g. haswell-2 (repeatable)",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[f"shipped={pretrained_path()}"],
        metavar="NAME=PATH",
        help="also score this pretrained booster (repeatable; the shipped one always)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results/cost_model.jsonl"))
    args = parser.parse_args()
    directory = args.data or data_dir()
    samples = load_samples(directory)
    trained = [s for s in samples if not s.held_out and s.target not in args.unseen_target]
    boosters = {}
    start = time.perf_counter()
    boosters["ember"] = train(samples, args.rounds, args.unseen_target)
    ember_s = time.perf_counter() - start
    boosters["ember-blind"] = train(_blind(samples), args.rounds, args.unseen_target)
    for spec in args.model:
        name, path = spec.split("=", 1)
        boosters[name] = load_pretrained(path)
    start = time.perf_counter()
    tvm_model = _tvm_xgb(directory, args.unseen_target)
    tvm_s = time.perf_counter() - start
    kernels = _held_out(directory)
    models: dict[str, Any] = {
        n: EmberCostModel({"kind": "llvm"}, b).predict for n, b in boosters.items()
    }
    models |= {"tvm-xgb": tvm_model.predict, "random": None}
    table = _score(models, kernels)
    seen = {s.target for s in trained}
    print(f"training: {len(trained)} kernels x targets {dict(Counter(s.target for s in trained))}; "
          f"training time ember {ember_s:.1f} s, tvm-xgb {tvm_s:.1f} s")  # fmt: skip
    for name, booster in boosters.items():
        print(f"  {name}: {_splits(booster)}")
    names = [n for n in next(iter(table.values()))[0] if n not in ("agree", "pairs")]
    names.insert(1, "pooled")
    records = []
    for target in sorted({k[1] for k in kernels}, key=lambda t: (t not in seen, t)):
        rows = [i for i, k in enumerate(kernels) if k[1] == target]
        candidates = sum(len(kernels[i][4]) for i in rows)
        print(f"\n{target} ({'seen' if target in seen else 'unseen'} in training): "
              f"{len(rows)} held-out kernels, {candidates} candidates")  # fmt: skip
        print(f"{'model':<12}" + "".join(f"{n:>11}" for n in names))
        for model, results in table.items():
            summary = {
                n: float(np.nanmean([results[i][n] for i in rows])) for n in names if n != "pooled"
            }
            pairs = sum(results[i]["pairs"] for i in rows)
            summary["pooled"] = sum(results[i]["agree"] for i in rows) / pairs
            print(f"{model:<12}" + "".join(f"{summary[n]:>11.3f}" for n in names))
            records.append({"case": "ranking", "model": model, "target": target,
                            "seen": target in seen, **summary,
                            "kernels": [kernels[i][0] for i in rows]})  # fmt: skip
    print("\nper held-out kernel (pairwise accuracy / best@1): " + " | ".join(table))
    for i, (name, target, *_rest) in enumerate(kernels):
        cells = " | ".join(f"{table[m][i]['pairwise']:.2f} / {table[m][i]['best@1']:.2f}"
                           for m in table)  # fmt: skip
        print(f"  {name + ' @' + target:<52} {cells}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        for record in records:
            f.write(json.dumps({**record, "unseen_targets": args.unseen_target,
                                **environment()}) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
