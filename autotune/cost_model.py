"""ember's cost model: XGBoost over TVM's per-store features plus a description of the target.

A candidate schedule is described by MetaSchedule's `PerStoreFeature` (164 numbers per buffer
store of the lowered kernel), summed and maxed over its stores, with the store count and the
target's features (`target_features.py`: cores, SIMD width, caches, GPU limits) appended, so one
model can serve several CPUs and GPUs (CDMPP's idea, TECHNIQUES.md §5), and each row's difference
from its batch's mean (`with_relative`). Training optimizes a
pairwise ranking objective within each (task, target) group: the model only ever has to order
candidates of one kernel, never compare kernels.

`EmberCostModel` is a MetaSchedule `PyCostModel`: it starts from the pretrained booster shipped in
`autotune/pretrained/` (trained by `python -m ember.autotune.train_cost_model`), and `update()`
keeps learning during tuning: the measured candidates of the tuned tasks are boosted on top of the
pretrained trees, so the model specializes to those tasks without forgetting the others.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np
import xgboost as xgb
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

from ember.autotune.target_features import FEATURE_NAMES, target_features
from ember.codegen.target import resolve_target
from ember.errors import TuningError

__all__ = [
    "PRETRAINED",
    "EmberCostModel",
    "candidate_features",
    "ember_cost_model",
    "feature_names",
    "fit_booster",
    "load_pretrained",
    "pack",
    "pretrained_path",
    "save_atomic",
    "store_features",
    "target_split_counts",
    "with_relative",
]

log = logging.getLogger(__name__)

PRETRAINED = "pretrained/cost_model.ubj"  # package data, relative to ember.autotune
_STORE_FEATURES = 164  # PerStoreFeature's vector length
_PARAMS = {
    "objective": "rank:pairwise",
    "lambdarank_pair_method": "mean",
    "lambdarank_num_pair_per_sample": 8,
    "eta": 0.1,
    "max_depth": 6,
    "min_child_weight": 1.0,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "seed": 0,
    "nthread": 1,
}
_UPDATE_ROUNDS = 30  # trees added per update() on the tuned tasks' measurements
_FAILED = 1e10  # MetaSchedule's cost for a candidate that did not build or run


def store_features(context: Any, candidates: Sequence[Any]) -> list[np.ndarray]:
    """Per-store features of each candidate: a [stores, 164] float32 array per candidate."""
    extractor = ms.feature_extractor.PerStoreFeature()
    return [f.numpy().astype(np.float32) for f in extractor.extract_from(context, candidates)]


def candidate_features(per_store: Sequence[np.ndarray], target: np.ndarray) -> np.ndarray:
    """One row per candidate: sum and max of its store features, the store count, the target."""
    rows = np.zeros((len(per_store), 2 * _STORE_FEATURES + 1 + len(target)), dtype=np.float32)
    for i, stores in enumerate(per_store):
        if len(stores):
            rows[i, :_STORE_FEATURES] = stores.sum(axis=0)
            rows[i, _STORE_FEATURES : 2 * _STORE_FEATURES] = stores.max(axis=0)
        rows[i, 2 * _STORE_FEATURES] = np.log2(1 + len(stores))
    rows[:, 2 * _STORE_FEATURES + 1 :] = target
    return rows


def with_relative(rows: np.ndarray) -> np.ndarray:
    """`rows` with each row's difference from the mean of its group appended.

    Only the order within one kernel matters, and the differences are what tells its candidates
    apart independently of the kernel's size (measured on held-out training kernels: pairwise
    accuracy 0.60 -> 0.64, the predicted best 3.8x -> 1.7x the true best).
    """
    return np.concatenate([rows, rows - rows.mean(axis=0, keepdims=True)], axis=1)


def feature_names() -> list[str]:
    """The name of every column the booster sees: `candidate_features`' layout, then the same
    names with a `rel_` prefix for `with_relative`'s differences."""
    absolute = [
        *(f"sum_{i}" for i in range(_STORE_FEATURES)),
        *(f"max_{i}" for i in range(_STORE_FEATURES)),
        "log2_stores",
        *FEATURE_NAMES,
    ]
    return [*absolute, *(f"rel_{name}" for name in absolute)]


def target_split_counts(booster: xgb.Booster) -> dict[str, int]:
    """How many tree nodes split on each target feature (absolute or relative), by name: zero
    everywhere means the model ignores the target."""
    names = feature_names()
    splits = booster.get_score(importance_type="weight")  # "f<column>" -> split count
    counts = dict.fromkeys(FEATURE_NAMES, 0)
    for column, count in splits.items():
        name = names[int(column[1:])].removeprefix("rel_")
        if name in counts:
            counts[name] += int(count)
    return counts


def pack(groups: Sequence[tuple[np.ndarray, np.ndarray]]) -> xgb.DMatrix:
    """A ranking DMatrix from (features, seconds) groups, one group per (task, target).

    Relevance is -log2(seconds / group best): 0 for a group's fastest candidate, -1 for one twice
    as slow. Failed candidates (cost 1e10) are dropped; relative features are per group.
    """
    rows, labels, qids = [], [], []
    for qid, (features, seconds) in enumerate(groups):
        ok = seconds < _FAILED
        if ok.sum() < 2:
            continue
        rows.append(with_relative(features[ok]))
        labels.append(-np.log2(seconds[ok] / seconds[ok].min()))
        qids.append(np.full(int(ok.sum()), qid))
    if not rows:
        raise TuningError("no task has two or more measured candidates to learn a ranking from")
    return xgb.DMatrix(np.concatenate(rows), label=np.concatenate(labels), qid=np.concatenate(qids))


def fit_booster(data: xgb.DMatrix, rounds: int, base: xgb.Booster | None = None) -> xgb.Booster:
    """Boost `rounds` trees on `data`, on top of `base`'s trees when given."""
    return xgb.train(_PARAMS, data, num_boost_round=rounds, xgb_model=base)


def pretrained_path() -> str:
    """The shipped booster's file path."""
    return str(resources.files("ember.autotune").joinpath(PRETRAINED))


@derived_object
class EmberCostModel(ms.cost_model.PyCostModel):
    """A MetaSchedule cost model: the pretrained ranking booster, refined online by `update()`.

    Scores are higher for faster candidates and comparable only within one `predict` call (one
    task's batch: relative features are taken over the batch).
    """

    def __init__(self, target: dict[str, Any], booster: xgb.Booster) -> None:
        super().__init__()
        self.target = target_features(target)
        self.pretrained = booster
        self.booster = booster
        self.seen: dict[str, tuple[list[np.ndarray], list[float]]] = {}  # task -> features, secs

    def predict(self, context: Any, candidates: list[Any]) -> np.ndarray:
        if not candidates:
            return np.zeros(0)
        rows = candidate_features(store_features(context, candidates), self._target(context))
        return self.booster.predict(xgb.DMatrix(with_relative(rows))).astype("float64")

    def update(self, context: Any, candidates: list[Any], results: list[Any]) -> None:
        if not candidates:
            return
        rows = candidate_features(store_features(context, candidates), self._target(context))
        features, seconds = self.seen.setdefault(ms.utils.shash2hex(context.mod), ([], []))
        features.extend(rows)
        seconds.extend(_median_seconds(r) for r in results)
        groups = [(np.array(f), np.array(s)) for f, s in self.seen.values()]
        try:
            data = pack(groups)
        except TuningError:  # nothing to rank yet (a single or only failed measurements)
            return
        self.booster = fit_booster(data, _UPDATE_ROUNDS, base=self.pretrained)

    def _target(self, context: Any) -> np.ndarray:
        """The features of the task's own target (the model's when the task has none)."""
        if context.target is None:
            return self.target
        return target_features(dict(context.target.export()))

    def save(self, path: str) -> None:
        """Save the current booster (pretrained plus online trees)."""
        self.booster.save_model(path)

    def load(self, path: str) -> None:
        """Load a booster saved by `save`; it becomes the base that `update()` refines."""
        booster = xgb.Booster()
        booster.load_model(path)
        self.pretrained = self.booster = booster
        self.seen.clear()


def _median_seconds(result: Any) -> float:
    if result.error_msg is not None or not result.run_secs:
        return _FAILED
    return float(np.median([float(s) for s in result.run_secs]))


def load_pretrained(path: str | None = None) -> xgb.Booster:
    """The shipped booster (or one at `path`), checked against this feature layout."""
    path = path or pretrained_path()
    if not os.path.exists(path):
        raise TuningError(
            f"ember's pretrained cost model is missing at {path}; reinstall ember or train one "
            f"with `python -m ember.autotune.train_cost_model`"
        )
    booster = xgb.Booster()
    booster.load_model(path)
    expected = 2 * (2 * _STORE_FEATURES + 1 + len(FEATURE_NAMES))
    if booster.num_features() != expected:
        raise TuningError(
            f"the cost model at {path} expects {booster.num_features()} features, this ember "
            f"makes {expected}: retrain it with `python -m ember.autotune.train_cost_model`"
        )
    return booster


def ember_cost_model(target: dict[str, Any]) -> ms.cost_model.CostModel:
    """A fresh cost model for `target` (a `resolve_target` spec), initialised from the pretrained
    weights; MetaSchedule calls its `update()` with every batch it measures."""
    return EmberCostModel(resolve_target(target), load_pretrained())


def save_atomic(booster: xgb.Booster, path: str) -> None:
    """Write `booster` to `path` via a temporary file (a crash never leaves half a model)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".ubj", delete=False) as f:
        temp = f.name
    booster.save_model(temp)
    os.chmod(temp, 0o644)  # NamedTemporaryFile makes it private; a shipped model is not
    shutil.move(temp, path)
