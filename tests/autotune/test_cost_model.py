"""ember's cost model: target features, the shipped model, ranking real measurements of a held-out
kernel, online update, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("xgboost")

from ember.autotune.cost_model import EmberCostModel, ember_cost_model, load_pretrained
from ember.autotune.cost_model_workloads import WORKLOADS
from ember.autotune.measure import InProcessBuilder, LocalRunner, MeasureConfig
from ember.autotune.target_features import FEATURE_NAMES, target_features
from ember.autotune.tasks import extract_tasks
from ember.autotune.zero_shot import default_candidate, sample_candidates
from ember.codegen.target import resolve_target
from ember.errors import TuningError

_CLEAR = 2.0  # pairs this far apart in latency must be ordered correctly


def test_target_features_describe_each_target() -> None:
    specs = {
        "avx512": {"kind": "llvm", "mcpu": "sapphirerapids", "num-cores": 2},
        "avx2": {"kind": "llvm", "mcpu": "haswell", "num-cores": 8},
        "neon": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "neoverse-n1"},
        "h100": {"kind": "cuda", "arch": "sm_90"},
        "mi300": {"kind": "rocm", "mcpu": "gfx942"},
    }
    vectors = {name: target_features(spec) for name, spec in specs.items()}
    names = list(FEATURE_NAMES)
    for vector in vectors.values():
        assert vector.shape == (len(FEATURE_NAMES),)
        assert np.isfinite(vector).all()
    as_set = {tuple(v.tolist()) for v in vectors.values()}
    assert len(as_set) == len(specs)
    assert vectors["avx512"][names.index("log2_vector_bits")] == 9
    assert vectors["avx2"][names.index("log2_vector_bits")] == 8
    assert vectors["avx2"][names.index("log2_cores")] == 3
    assert vectors["neon"][names.index("has_neon")] == 1
    assert vectors["h100"][names.index("is_gpu")] == 1
    assert vectors["h100"][names.index("log2_warp_size")] == 5
    assert vectors["mi300"][names.index("log2_warp_size")] == 6


def test_missing_model_says_how_to_train_one(tmp_path: Path) -> None:
    with pytest.raises(TuningError, match="train_cost_model"):
        load_pretrained(str(tmp_path / "absent.ubj"))


@pytest.fixture(scope="module")
def measured() -> tuple[object, list[object], np.ndarray]:
    """A held-out matmul (never trained on): 12 sampled candidates and the default, timed here."""
    spec = resolve_target("llvm")
    workload = next(w for w in WORKLOADS if w.name == "dense_256x256x256")
    assert workload.held_out
    (task,) = extract_tasks(workload.graph(), spec)
    import tvm

    tgt = tvm.target.Target(spec)
    context, candidates = sample_candidates(task.mod, tgt, 12, seed=7)
    candidates.append(default_candidate(task.mod, spec))
    builder = InProcessBuilder()
    runner = LocalRunner(MeasureConfig(repeat=3, min_repeat_ms=5, timeout_sec=2.0))
    from tvm.s_tir import meta_schedule as ms

    try:
        built = builder.build([ms.builder.BuilderInput(c.sch.mod, tgt) for c in candidates])
        inputs = [
            ms.runner.RunnerInput(b.artifact_path, "llvm", c.args_info)
            for b, c in zip(built, candidates, strict=True)
        ]
        results = [future.result() for future in runner.run(inputs)]
    finally:
        builder.cleanup()
    seconds = np.array([np.median([float(s) for s in r.run_secs]) for r in results])
    return context, candidates, seconds


def _clear_pairs(seconds: np.ndarray, scores: np.ndarray) -> tuple[int, int]:
    """(pairs at least _CLEAR apart in latency, those the scores order correctly)."""
    faster = seconds[:, None] * _CLEAR < seconds[None, :]
    return int(faster.sum()), int((faster & (scores[:, None] > scores[None, :])).sum())


@pytest.mark.slow  # builds and times 13 candidates
def test_pretrained_model_ranks_a_held_out_matmul(measured: tuple) -> None:
    context, candidates, seconds = measured
    model = ember_cost_model(resolve_target("llvm"))
    scores = model.predict(context, candidates)
    assert scores.shape == (len(candidates),)
    assert np.isfinite(scores).all()
    pairs, correct = _clear_pairs(seconds, scores)
    assert pairs >= 5, f"the sample has too few clearly ordered pairs: {seconds}"
    assert correct / pairs >= 0.75, (correct, pairs, seconds, scores)
    assert seconds[int(np.argmax(scores))] <= 2.5 * seconds.min(), (seconds, scores)


@pytest.mark.slow  # builds and times 13 candidates
def test_update_learns_the_measurements_and_saves(measured: tuple, tmp_path: Path) -> None:
    from tvm.s_tir import meta_schedule as ms

    context, candidates, seconds = measured
    model = ember_cost_model(resolve_target("llvm"))
    before = model.predict(context, candidates)
    results = [ms.runner.RunnerResult([float(s)], None) for s in seconds]
    model.update(context, candidates, results)
    after = model.predict(context, candidates)
    assert not np.allclose(before, after)
    pairs, correct = _clear_pairs(seconds, after)
    assert correct / pairs >= 0.9, (correct, pairs)
    path = str(tmp_path / "model.ubj")
    model.save(path)
    restored = EmberCostModel(resolve_target("llvm"), load_pretrained(path))
    np.testing.assert_allclose(restored.predict(context, candidates), after, rtol=1e-6)
