"""Train the cost model ember ships: `python -m ember.autotune.train_cost_model`.

1. Collect: small ember graphs of many operators and shapes (dense and matmul, batch matmul,
   attention scores, conv2d, softmax, layer norm, elementwise chains, reductions) are cut into the
   kernels `codegen.build` compiles (`tasks.extract_tasks`). For each kernel, MetaSchedule's
   design space is sampled at random (`ReplayTrace`), ember's default (dlight) schedule is added,
   and every candidate is built and timed on this CPU with ember's in-process builder and runner.
   Records go to a MetaSchedule JSON database under `<cache>/cost_model_data/` with a `tasks.json`
   index (split, family, default latency); collection resumes where it stopped.
2. Featurize: every record's trace is replayed onto its kernel and described by `candidate_features`
   (`features.npz`, a cache of the database).
3. Train on the training tasks only and write `autotune/pretrained/cost_model.ubj`. A fixed set of
   workloads is held out (whole kernels, never seen in training): `benchmarks/cost_model.py` scores
   rankings on them.

Collecting again with another `--target` (e.g. `mcpu=haswell` on this AVX-512 CPU) adds that
target's measurements to the same database: one query group per (kernel, target), so the trees
can learn how the target changes which schedule wins (`target_split_counts` says whether they
did). `--exclude-target` trains without a target, to test transfer to it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tvm.s_tir import meta_schedule as ms

from ember.autotune.cost_model import (
    candidate_features,
    fit_booster,
    pack,
    pretrained_path,
    save_atomic,
    store_features,
    target_split_counts,
)
from ember.autotune.cost_model_workloads import WORKLOADS, Workload
from ember.autotune.measure import (
    InProcessBuilder,
    LocalRunner,
    MeasureConfig,
    preload_tensor_intrinsics,
)
from ember.autotune.target_features import target_features
from ember.autotune.tasks import extract_tasks
from ember.autotune.zero_shot import default_candidate, sample_candidates
from ember.codegen.target import resolve_target
from ember.config import cache_dir

__all__ = [
    "Sample",
    "data_dir",
    "load_index",
    "load_samples",
    "main",
    "records_by_kernel",
    "replay",
    "target_label",
    "train",
    "training_groups",
]

log = logging.getLogger(__name__)

_MEASURE = MeasureConfig(repeat=3, min_repeat_ms=10, timeout_sec=1.5)
_FAILED = 1e10


@dataclass(frozen=True)
class Sample:
    """One measured kernel: its candidates' features and median seconds (the last candidate is
    ember's default schedule)."""

    key: str  # kernel structural hash @ target (`kernel_key`)
    target: str  # `target_label` of the target it was measured for
    name: str
    family: str
    held_out: bool
    features: np.ndarray  # [candidates, features]
    seconds: np.ndarray  # [candidates]; 1e10 where the candidate failed


def data_dir() -> Path:
    """Where the collected measurements live (not in git)."""
    return cache_dir() / "cost_model_data"


def target_label(spec: dict[str, Any]) -> str:
    """A short name of a measured target: `mcpu` (or kind) and core count, e.g. haswell-2."""
    return f"{spec.get('mcpu', spec['kind'])}-{spec.get('num-cores', 0)}"


def kernel_key(mod: Any, spec: dict[str, Any]) -> str:
    """A measured kernel's key: its structural hash and the target it was measured for."""
    return f"{ms.utils.shash2hex(mod)}@{target_label(spec)}"


def _index_path(directory: Path) -> Path:
    return directory / "tasks.json"


def load_index(directory: Path) -> dict[str, Any]:
    path = _index_path(directory)
    return json.loads(path.read_text()) if path.exists() else {}


def _save_index(directory: Path, index: dict[str, Any]) -> None:
    temp = _index_path(directory).with_suffix(".tmp")
    temp.write_text(json.dumps(index, indent=1, sort_keys=True))
    os.replace(temp, _index_path(directory))


def _database(directory: Path) -> Any:
    return ms.database.JSONDatabase(
        path_workload=str(directory / "workloads.json"),
        path_tuning_record=str(directory / "records.json"),
    )


def _measure(candidates: list[Any], tgt: Any, builder: Any, runner: Any) -> list[float]:
    """Median seconds per candidate (1e10 when it failed to build or run)."""
    built = builder.build([ms.builder.BuilderInput(c.sch.mod, tgt) for c in candidates])
    seconds = []
    for candidate, result in zip(candidates, built, strict=True):
        if result.error_msg is not None:
            seconds.append(_FAILED)
            continue
        inputs = [ms.runner.RunnerInput(result.artifact_path, "llvm", candidate.args_info)]
        outcome = runner.run(inputs)[0].result()
        ok = outcome.error_msg is None and outcome.run_secs
        seconds.append(float(np.median([float(s) for s in outcome.run_secs])) if ok else _FAILED)
    return seconds


def collect(spec: dict[str, Any], per_task: int, minutes: float, directory: Path,
            held_out_only: bool = False) -> None:  # fmt: skip
    """Measure every workload's kernels for `spec` (resuming), stopping after about `minutes`;
    `held_out_only` measures only the evaluation kernels (a new target to test transfer on)."""
    preload_tensor_intrinsics()
    directory.mkdir(parents=True, exist_ok=True)
    tgt = tvm.target.Target(spec)
    index, database = load_index(directory), _database(directory)
    builder, runner = InProcessBuilder(), LocalRunner(_MEASURE)
    deadline = time.monotonic() + minutes * 60
    try:
        for workload, task in _tasks(spec):
            key = kernel_key(task.mod, spec)
            if key in index or (held_out_only and not workload.held_out):
                continue
            if time.monotonic() > deadline:
                log.warning("collection budget spent; rerun to continue")
                break
            start = time.perf_counter()
            seed = len(index)
            _, candidates = sample_candidates(task.mod, tgt, per_task, seed)
            default = default_candidate(task.mod, spec)
            seconds = _measure([*candidates, default], tgt, builder, runner)
            workload_entry = database.commit_workload(task.mod)
            for candidate, secs in zip(candidates, seconds, strict=False):
                database.commit_tuning_record(
                    ms.database.TuningRecord(
                        candidate.sch.trace, workload_entry, [secs], tgt, candidate.args_info
                    )
                )
            index[key] = {
                "name": f"{workload.name}/{task.name}",
                "family": workload.family,
                "held_out": workload.held_out,
                "flops": task.flops,
                "default_seconds": seconds[-1],
                "candidates": len(candidates),
                "target": spec,
            }
            _save_index(directory, index)
            valid = [s for s in seconds[:-1] if s < _FAILED]
            log.info("%s: %d candidates in %.0f s, best %.3f ms, default %.3f ms",
                     index[key]["name"], len(candidates), time.perf_counter() - start,
                     min(valid, default=float("nan")) * 1e3, seconds[-1] * 1e3)  # fmt: skip
    finally:
        builder.cleanup()


def _tasks(spec: dict[str, Any]) -> Iterator[tuple[Workload, Any]]:
    for workload in WORKLOADS:
        for task in extract_tasks(workload.graph(), spec):
            yield workload, task


def load_samples(directory: Path | None = None) -> list[Sample]:
    """Every measured kernel, featurized (cached in `features.npz` next to the database; only
    kernels measured since the cache was written are featurized again)."""
    directory = directory or data_dir()
    index = load_index(directory)
    cache = directory / "features.npz"
    cached: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if cache.exists():
        stored = np.load(cache, allow_pickle=False)
        cached = {k: (stored[f"x_{k}"], stored[f"y_{k}"]) for k in stored["keys"].tolist()}
    if set(index) - set(cached):
        for key, records in records_by_kernel(directory):
            if key not in cached:
                sample = _featurize(directory, index, key, records)
                cached[key] = (sample.features, sample.seconds)
        keys = sorted(set(index) & set(cached))
        np.savez_compressed(
            cache,
            keys=np.array(keys),
            **{f"x_{k}": cached[k][0] for k in keys},
            **{f"y_{k}": cached[k][1] for k in keys},
        )
    return [_sample(index, key, *cached[key]) for key in sorted(index) if key in cached]


def _sample(index: dict[str, Any], key: str, features: np.ndarray, seconds: np.ndarray) -> Sample:
    entry = index[key]
    return Sample(key, target_label(entry["target"]), entry["name"], entry["family"],
                  entry["held_out"], features, seconds)  # fmt: skip


def records_by_kernel(directory: Path) -> list[tuple[str, list[Any]]]:
    """(workload key, its records) for every indexed workload in the database (a collection that
    was interrupted may have committed records of a kernel it did not index)."""
    index = load_index(directory)
    grouped: dict[str, list[Any]] = {}
    for record in _database(directory).get_all_tuning_records():
        key = kernel_key(record.workload.mod, dict(record.target.export()))
        if key in index:
            grouped.setdefault(key, []).append(record)
    return sorted(grouped.items())


def replay(records: list[Any]) -> tuple[Any, list[Any], np.ndarray]:
    """A TuneContext for the records' kernel, their candidates, and their median seconds."""
    preload_tensor_intrinsics()  # TuneContext imports them, slowly without this
    mod = records[0].workload.mod
    tgt = records[0].target
    context = ms.TuneContext(mod=mod, target=tgt, task_name="replay")
    candidates = []
    for record in records:
        sch = tvm.s_tir.Schedule(mod)
        record.trace.apply_to_schedule(sch, remove_postproc=False)
        candidates.append(ms.MeasureCandidate(sch, record.args_info))
    seconds = np.array([float(np.median([float(s) for s in r.run_secs])) for r in records])
    return context, candidates, seconds


def _featurize(directory: Path, index: dict[str, Any], key: str, records: list[Any]) -> Sample:
    entry = index[key]
    context, candidates, seconds = replay(records)
    spec = entry["target"]
    candidates.append(default_candidate(context.mod, spec))
    seconds = np.append(seconds, entry["default_seconds"])
    features = candidate_features(store_features(context, candidates), target_features(spec))
    return _sample(index, key, features, seconds)


def training_groups(samples: list[Sample], exclude_targets: Collection[str] = ()
                    ) -> list[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """(features, seconds) of each training kernel per target: one ranking group per (kernel,
    target). Held-out kernels and targets in `exclude_targets` (`target_label`s) are left out."""
    return [(s.features, s.seconds) for s in _training_samples(samples, exclude_targets)]


def _training_samples(samples: list[Sample], exclude_targets: Collection[str]) -> list[Sample]:
    return [s for s in samples if not s.held_out and s.target not in exclude_targets]


def train(samples: list[Sample], rounds: int, exclude_targets: Collection[str] = ()) -> Any:
    """A booster trained on the training kernels of `samples` (see `training_groups`)."""
    return fit_booster(pack(training_groups(samples, exclude_targets)), rounds)


def main(argv: list[str] | None = None) -> None:
    """Collect (resumable), featurize, train, write the shipped model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="llvm")
    parser.add_argument("--per-task", type=int, default=32, help="candidates sampled per kernel")
    parser.add_argument("--minutes", type=float, default=35.0, help="collection budget")
    parser.add_argument("--rounds", type=int, default=300, help="boosting rounds")
    parser.add_argument("--data", type=Path, default=None, help="dataset directory")
    parser.add_argument("--output", default=pretrained_path())
    parser.add_argument("--skip-collect", action="store_true")
    parser.add_argument(
        "--held-out-only",
        action="store_true",
        help="collect only the held-out kernels (evaluate on a new target)",
    )
    parser.add_argument(
        "--exclude-target",
        action="append",
        default=[],
        metavar="LABEL",
        help="train without this target's kernels, e.g. haswell-2 (repeatable)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.ERROR)  # "cannot be tensorized"
    directory = args.data or data_dir()
    if not args.skip_collect:
        collect(
            resolve_target(args.target), args.per_task, args.minutes, directory, args.held_out_only
        )
    samples = load_samples(directory)
    booster = train(samples, args.rounds, args.exclude_target)
    save_atomic(booster, args.output)
    trained = _training_samples(samples, args.exclude_target)
    per_target = dict(sorted(Counter(s.target for s in trained).items()))
    log.info("trained on %d kernels %s (%d held out) -> %s", len(trained), per_target,
             sum(s.held_out for s in samples), args.output)  # fmt: skip
    splits = {name: n for name, n in target_split_counts(booster).items() if n}
    log.info("tree nodes splitting on target features: %s", splits or "none")


if __name__ == "__main__":
    main()
