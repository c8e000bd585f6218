"""The cost-model trainer on several targets: one ranking group per (kernel, target), held-out
kernels and excluded targets left out, the feature cache, and trees that learn a ranking that
depends on the target (synthetic latencies, so the test is fast and exact)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("xgboost")

import xgboost as xgb

from ember.autotune.cost_model import (
    candidate_features,
    feature_names,
    fit_booster,
    pack,
    target_split_counts,
    with_relative,
)
from ember.autotune.target_features import FEATURE_NAMES, target_features
from ember.autotune.train_cost_model import (
    Sample,
    load_samples,
    target_label,
    train,
    training_groups,
)

_AVX512 = {"kind": "llvm", "mcpu": "sapphirerapids", "num-cores": 2}
_AVX2 = {"kind": "llvm", "mcpu": "haswell", "num-cores": 2}
_LANES = (1, 2, 4, 8, 16)  # fp32 vector lanes of the synthetic candidates
_TARGET = [feature_names().index(name) for name in FEATURE_NAMES]  # columns of a candidate row


def _candidates(spec: dict, rng: np.random.Generator, n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """`n` synthetic candidates of one kernel for `spec`, two stores each: per-store feature 0 is
    the vector width the schedule asks for (the others are 0). The fastest width is the target's:
    16 lanes on AVX-512; on AVX2 16 lanes are emulated and slower than 1."""
    lanes = rng.choice(_LANES, size=n)
    best = 2 ** int(target_features(spec)[FEATURE_NAMES.index("log2_vector_bits")]) // 32
    seconds = np.where(lanes <= best, 1.0 / lanes, 2.0) * rng.uniform(0.95, 1.05, n)
    stores = [np.c_[np.full((2, 1), lane), np.zeros((2, 163))].astype(np.float32) for lane in lanes]
    return candidate_features(stores, target_features(spec)), seconds


def _sample(key: str, spec: dict, held_out: bool, rng: np.random.Generator) -> Sample:
    features, seconds = _candidates(spec, rng)
    return Sample(f"{key}@{target_label(spec)}", target_label(spec), key, "dense", held_out,
                  features, seconds)  # fmt: skip


def test_one_group_per_kernel_and_target_without_held_out_or_excluded() -> None:
    rng = np.random.default_rng(0)
    samples = [
        _sample("a", _AVX512, False, rng),
        _sample("a", _AVX2, False, rng),
        _sample("b", _AVX512, False, rng),
        _sample("c", _AVX512, True, rng),  # held out: never trained on
        _sample("c", _AVX2, True, rng),
    ]
    groups = training_groups(samples)
    assert len(groups) == 3
    assert [len(g[0]) for g in groups] == [30, 30, 30]
    data = pack(groups)
    assert data.get_uint_info("group_ptr").tolist() == [0, 30, 60, 90]
    only_avx512 = training_groups(samples, exclude_targets={"haswell-2"})
    assert len(only_avx512) == 2
    assert all(g[0] is s.features for g, s in zip(only_avx512, samples[::2], strict=False))


def _picked_lanes(booster: xgb.Booster, spec: dict, blind: bool = False) -> int:
    """The vector width of the candidate `booster` scores best among 40 new ones for `spec`."""
    features, _ = _candidates(spec, np.random.default_rng(2), n=40)
    if blind:
        features[:, _TARGET] = 0
    scores = booster.predict(xgb.DMatrix(with_relative(features)))
    return int(features[int(np.argmax(scores)), 0]) // 2  # feature 0 is summed over 2 stores


def test_trees_split_on_the_target_to_rank_for_each_cpu() -> None:
    rng = np.random.default_rng(1)
    samples = [_sample(f"k{i}", spec, False, rng) for i in range(8) for spec in (_AVX512, _AVX2)]
    booster = train(samples, rounds=40)
    splits = target_split_counts(booster)
    assert sum(splits.values()) > 0, splits
    assert _picked_lanes(booster, _AVX512) == 16
    assert _picked_lanes(booster, _AVX2) == 8
    # the same data with the target features constant: one ranking for both CPUs
    blind_groups = []
    for features, seconds in training_groups(samples):
        features = features.copy()
        features[:, _TARGET] = 0
        blind_groups.append((features, seconds))
    blind = fit_booster(pack(blind_groups), 40)
    assert sum(target_split_counts(blind).values()) == 0
    assert _picked_lanes(blind, _AVX512, blind=True) == _picked_lanes(blind, _AVX2, blind=True)


def test_features_are_cached_per_kernel_and_target(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    samples = [_sample("a", _AVX512, False, rng), _sample("a", _AVX2, True, rng)]
    index = {
        s.key: {
            "name": s.name,
            "family": s.family,
            "held_out": s.held_out,
            "target": spec,
        }
        for s, spec in zip(samples, (_AVX512, _AVX2), strict=True)
    }
    (tmp_path / "tasks.json").write_text(json.dumps(index))
    np.savez_compressed(
        tmp_path / "features.npz",
        keys=np.array([s.key for s in samples]),
        **{f"x_{s.key}": s.features for s in samples},
        **{f"y_{s.key}": s.seconds for s in samples},
    )
    loaded = load_samples(tmp_path)  # every key cached: the database is not read
    assert [(s.key, s.target, s.held_out) for s in loaded] == sorted(
        (s.key, s.target, s.held_out) for s in samples
    )
    by_key = {s.key: s for s in samples}
    for sample in loaded:
        np.testing.assert_array_equal(sample.features, by_key[sample.key].features)
        np.testing.assert_array_equal(sample.seconds, by_key[sample.key].seconds)
