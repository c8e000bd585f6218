"""Zero-shot schedules vs TVM untuned, ember's default rules and MetaSchedule tuning, in one run.

    python benchmarks/zero_shot.py [--trials 64] [--candidates 32] [CASE ...]

Per case (held-out kernels of the cost model's training set, plus a two-layer MLP): the TVM
untuned build (`schedule=False`), ember's default schedules, zero-shot on the kernels only the
generic Fallback rule matches ("fallback"), zero-shot on every kernel ("all"), and MetaSchedule
tuning for `--trials` measurements (TVM's XGB cost model, so the tuned reference does not depend on
ember's model). Every build's output is checked against ember's reference interpreter before
timing; implementations are timed interleaved (`_harness.compare`). Compile times are wall clock
for the build (and the search, for tuned); zero-shot's first build also pays a one-time import of
MetaSchedule's tensor intrinsics, reported separately.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _harness import compare, environment

from ember.autotune.cost_model_workloads import WORKLOADS
from ember.autotune.measure import preload_tensor_intrinsics
from ember.autotune.zero_shot import zero_shot_schedules
from ember.codegen.build import build
from ember.ir import Builder, Graph, interpret
from ember.ir.ops import Add, Gelu, MatMul
from ember.runtime import Executor

_KERNELS = (
    "dense_256x256x256",
    "dense_96x384x192",
    "conv_1x16x56_32k3",
    "attention_1x8x96x32",
    "softmax_128x1024",
    "layer_norm_64x768",
    "gelu_add_512x512",
    "reduce_mean_1024x256",
)


def _mlp() -> Graph:
    """x[32, 256] -> dense 1024 + gelu -> dense 256 (weights constant)."""
    rng = np.random.default_rng(0)
    b = Builder("mlp_32x256x1024")
    x = b.input((32, 256), name="x")
    w1 = b.const(rng.standard_normal((256, 1024)).astype(np.float32) * 0.05)
    w2 = b.const(rng.standard_normal((1024, 256)).astype(np.float32) * 0.05)
    hidden = b.emit(Gelu(), b.emit(Add(), b.emit(MatMul(), x, w1), b.const(np.zeros(1024, "f4"))))
    b.output(b.emit(MatMul(), hidden, w2))
    return b.build()


def _cases() -> dict[str, Callable[[], Graph]]:
    cases = {w.name: w.graph for w in WORKLOADS if w.name in _KERNELS}
    return {**cases, "mlp_32x256x1024": _mlp}


def _inputs(g: Graph) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs]


def _tuned(g: Graph, trials: int) -> Any:
    """The build with `trials` MetaSchedule trials, or None when TVM's tuning fails."""
    from tvm.s_tir import meta_schedule as ms

    from ember.autotune.tune import tune
    from ember.errors import TuningError

    database = ms.database.MemoryDatabase()
    try:
        tune(g, "llvm", trials=trials, database=database, cost_model="xgb")
    except TuningError as err:
        print(f"{g.name}: tuning failed, no tuned column: {str(err).splitlines()[0]}")
        return None
    return build(g, "llvm", database=database)


def _builds(g: Graph, trials: int, candidates: int) -> dict[str, tuple[Any, float]]:
    """Each implementation's executable and its compile seconds."""
    variants: dict[str, Callable[[], Any]] = {
        "tvm-untuned": lambda: build(g, "llvm", schedule=False),
        "default": lambda: build(g, "llvm"),
        "zs-fallback": lambda: build(g, "llvm", zero_shot=partial(
            zero_shot_schedules, kernels="fallback", candidates=candidates)),
        "zs-all": lambda: build(g, "llvm", zero_shot=partial(
            zero_shot_schedules, kernels="all", candidates=candidates)),
    }  # fmt: skip
    if trials:
        variants["tuned"] = lambda: _tuned(g, trials)
    built = {}
    for name, make in variants.items():
        start = time.perf_counter()
        result = make()
        if result is not None:
            built[name] = (Executor(result.executable), time.perf_counter() - start)
    return built


def _check(g: Graph, built: dict[str, tuple[Any, float]], inputs: list[np.ndarray]) -> None:
    expected = interpret(g, *inputs)
    for name, (executor, _) in built.items():
        outputs = [t.numpy() for t in executor.run(inputs)]
        for got, want in zip(outputs, expected, strict=True):
            if not np.allclose(got, want, rtol=1e-3, atol=1e-4):
                raise SystemExit(f"{g.name}: {name} differs from the reference")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*")
    parser.add_argument("--trials", type=int, default=64, help="0: no tuned column")
    parser.add_argument("--candidates", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("bench-results/zero_shot.jsonl"))
    args = parser.parse_args()
    start = time.perf_counter()
    preload_tensor_intrinsics()
    print(f"one-time MetaSchedule tensor-intrinsic import: {time.perf_counter() - start:.1f} s")
    cases = {n: f for n, f in _cases().items() if not args.cases or n in args.cases}
    lines = []
    head = ("case", "untuned", "default", "zs-fallb", "zs-all", "tuned", "all/def", "all/tuned",
            "untuned/all")  # fmt: skip
    print(("{:<22}" + "{:>12}" * 8).format(*head) + "   compile s: default / zs-all / tuned")
    for name, factory in cases.items():
        g = factory()
        inputs = _inputs(g)
        built = _builds(g, args.trials, args.candidates)
        _check(g, built, inputs)
        stats = compare({n: partial(e.run, inputs) for n, (e, _) in built.items()},
                        warmup=3, repeat=40, budget_s=4.0)  # fmt: skip
        ms = {n: s.median_ms for n, s in stats.items()}
        tuned = ms.get("tuned", float("nan"))
        row = [ms["tvm-untuned"], ms["default"], ms["zs-fallback"], ms["zs-all"], tuned,
               ms["zs-all"] / ms["default"], ms["zs-all"] / tuned, ms["tvm-untuned"] / ms["zs-all"]]  # fmt: skip
        compile_s = {n: s for n, (_, s) in built.items()}
        print(("{:<22}" + "{:>12.3f}" * 8).format(name, *row)
              + f"   {compile_s['default']:.1f} / {compile_s['zs-all']:.1f} / "
              f"{compile_s.get('tuned', float('nan')):.0f}")  # fmt: skip
        lines.append({"case": name, "ms": ms, "compile_s": compile_s, "trials": args.trials,
                      "candidates": args.candidates, **environment()})  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)


if __name__ == "__main__":
    main()
