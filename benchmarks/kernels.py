"""One-op kernels: ember's default schedules vs TVM untuned (dlight off) vs torch eager vs numpy.

    python benchmarks/kernels.py                    # every case
    python benchmarks/kernels.py matmul softmax     # cases whose name starts with these
    python benchmarks/kernels.py --repeat 100 --out bench-results/kernels.jsonl

Each graph takes the production path (`ember.codegen.build.build`, `ember.runtime.Executor`);
`build(..., schedule=False)` is the untuned baseline, and cases with exp/erf/tanh add `libm`:
ember's schedules with `fast_math=False`. Weights are graph constants, as after import (CPU
builds pack them once: `gemv` vs `decode` shows constant vs runtime weights). Every
implementation's output is checked against numpy before it is timed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _harness import Row, compare, environment, print_table, write_jsonl

from ember.ir import Builder, Graph, ops

Inputs = list[np.ndarray]


@dataclass(frozen=True)
class Case:
    """A one-op graph, its runtime inputs, and the same computation in numpy and torch."""

    name: str
    shape: str
    make: Callable[[np.random.Generator], tuple[Graph, Inputs, dict[str, np.ndarray]]]
    numpy_fn: Callable[[Inputs, dict[str, np.ndarray]], np.ndarray] | None
    torch_fn: Callable[[list[Any], dict[str, Any]], Any]
    libm: bool = False  # also time the build without fast math (transcendental functions)


def _rand(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _matmul(m: int, k: int, n: int) -> Case:
    def make(rng: np.random.Generator) -> tuple[Graph, Inputs, dict[str, np.ndarray]]:
        b = Builder()
        b.output(
            b.emit(ops.MatMul(), b.input((m, k), "float32", "x"), b.input((k, n), "float32", "w"))
        )
        return b.build(), [_rand(rng, m, k), _rand(rng, k, n)], {}

    return Case(
        f"matmul{m}" if m == k == n else "decode",
        f"{m}x{k} @ {k}x{n}",
        make,
        lambda xs, _: xs[0] @ xs[1],
        lambda xs, _: xs[0] @ xs[1],
    )


def _linear(batch: int, seq: int, k: int, n: int, *, gelu: bool, name: str = "") -> Case:
    def make(rng: np.random.Generator) -> tuple[Graph, Inputs, dict[str, np.ndarray]]:
        w, bias = _rand(rng, k, n) / math.sqrt(k), _rand(rng, n)
        b = Builder()
        y = b.emit(
            ops.Add(),
            b.emit(ops.MatMul(), b.input((batch, seq, k), "float32", "x"), b.const(w)),
            b.const(bias),
        )
        b.output(b.emit(ops.Gelu(), y) if gelu else y)
        return b.build(), [_rand(rng, batch, seq, k)], {"w": w, "b": bias}

    def numpy_fn(xs: Inputs, p: dict[str, np.ndarray]) -> np.ndarray:
        y = xs[0] @ p["w"] + p["b"]
        return ops.Gelu().reference(y) if gelu else y

    def torch_fn(xs: list[Any], p: dict[str, Any]) -> Any:
        import torch

        y = torch.addmm(p["b"], xs[0].reshape(-1, k), p["w"]).reshape(batch, seq, n)
        return torch.nn.functional.gelu(y) if gelu else y

    name = name or (f"linear_gelu_b{batch}" if gelu else f"linear_b{batch}")
    return Case(name, f"{batch}x{seq}x{k} -> {n}", make, numpy_fn, torch_fn, libm=gelu)


def _softmax(shape: tuple[int, ...]) -> Case:
    def make(rng: np.random.Generator) -> tuple[Graph, Inputs, dict[str, np.ndarray]]:
        b = Builder()
        b.output(b.emit(ops.Softmax(-1), b.input(shape, "float32", "x")))
        return b.build(), [_rand(rng, *shape)], {}

    def numpy_fn(xs: Inputs, _: dict[str, np.ndarray]) -> np.ndarray:
        e = np.exp(xs[0] - xs[0].max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    return Case(
        "softmax",
        "x".join(map(str, shape)),
        make,
        numpy_fn,
        lambda xs, _: xs[0].softmax(-1),
        libm=True,
    )


def _layer_norm(shape: tuple[int, ...]) -> Case:
    def make(rng: np.random.Generator) -> tuple[Graph, Inputs, dict[str, np.ndarray]]:
        w, bias = _rand(rng, shape[-1]), _rand(rng, shape[-1])
        b = Builder()
        b.output(
            b.emit(
                ops.LayerNorm(-1, 1e-5), b.input(shape, "float32", "x"), b.const(w), b.const(bias)
            )
        )
        return b.build(), [_rand(rng, *shape)], {"w": w, "b": bias}

    def numpy_fn(xs: Inputs, p: dict[str, np.ndarray]) -> np.ndarray:
        mean = xs[0].mean(-1, keepdims=True)
        var = xs[0].var(-1, keepdims=True)
        return (xs[0] - mean) / np.sqrt(var + 1e-5) * p["w"] + p["b"]

    def torch_fn(xs: list[Any], p: dict[str, Any]) -> Any:
        import torch

        return torch.nn.functional.layer_norm(xs[0], (shape[-1],), p["w"], p["b"], 1e-5)

    return Case("layer_norm", "x".join(map(str, shape)), make, numpy_fn, torch_fn)


def _gelu(shape: tuple[int, ...]) -> Case:
    def make(rng: np.random.Generator) -> tuple[Graph, Inputs, dict[str, np.ndarray]]:
        b = Builder()
        b.output(b.emit(ops.Gelu(), b.input(shape, "float32", "x")))
        return b.build(), [_rand(rng, *shape)], {}

    def torch_fn(xs: list[Any], _: dict[str, Any]) -> Any:
        import torch

        return torch.nn.functional.gelu(xs[0])

    # numpy has no erf: the reference (a Python-level erf) is the check, not a timed baseline
    return Case("gelu", "x".join(map(str, shape)), make, None, torch_fn, libm=True)


CASES = (
    _matmul(256, 256, 256),
    _linear(1, 128, 256, 1024, gelu=False),
    _linear(8, 128, 256, 1024, gelu=False),
    _linear(8, 128, 256, 1024, gelu=True),
    _matmul(1, 2048, 2048),
    _linear(1, 1, 2048, 2048, gelu=False, name="gemv"),
    _softmax((8, 4, 128, 128)),
    _layer_norm((8, 128, 256)),
    _gelu((8, 128, 1024)),
)


def run_case(case: Case, *, repeat: int, budget_s: float) -> Row:
    """Build, check and time every implementation of one case."""
    import torch
    import tvm

    from ember.codegen.build import build
    from ember.runtime import Executor

    graph, inputs, params = case.make(np.random.default_rng(0))
    expected = graph_reference(case, graph, inputs, params)
    fns: dict[str, Callable[[], Any]] = {}
    builds = {"ember": {}, "untuned": {"schedule": False}}
    if case.libm:
        builds["libm"] = {"fast_math": False}
    for impl, options in builds.items():
        run = Executor(build(graph, "llvm", **options).executable)
        args = [tvm.runtime.tensor(x) for x in inputs]
        _check(case, impl, run.run(args)[0].numpy(), expected)
        fns[impl] = lambda run=run, args=args: run.run(args)
    torch_args = [torch.from_numpy(x) for x in inputs]
    torch_params = {k: torch.from_numpy(v) for k, v in params.items()}
    with torch.inference_mode():
        _check(case, "torch", case.torch_fn(torch_args, torch_params).numpy(), expected)
    fns["torch"] = torch.inference_mode()(lambda: case.torch_fn(torch_args, torch_params))
    if case.numpy_fn is not None:
        numpy_fn = case.numpy_fn
        fns["numpy"] = lambda: numpy_fn(inputs, params)
    return Row(case.name, case.shape, compare(fns, warmup=3, repeat=repeat, budget_s=budget_s))


def graph_reference(
    case: Case, graph: Graph, inputs: Inputs, params: dict[str, np.ndarray]
) -> np.ndarray:
    """The expected output: numpy when the case has it, else ember's reference interpreter."""
    if case.numpy_fn is not None:
        return case.numpy_fn(inputs, params)
    from ember.ir import interpret

    return np.asarray(interpret(graph, *inputs)[0])


def _check(case: Case, impl: str, got: np.ndarray, expected: np.ndarray) -> None:
    scale = float(np.abs(expected).max()) or 1.0
    err = float(np.abs(got.astype(np.float64) - expected).max()) / scale
    if not err < 1e-4:
        raise SystemExit(
            f"{case.name}: {impl} output differs from numpy (max error {err:.2e} of max |y|)"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("cases", nargs="*", help="name prefixes of the cases to run (default: all)")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--budget", type=float, default=3.0, help="max seconds of timing per case")
    parser.add_argument("--out", help="append JSON lines here (e.g. bench-results/kernels.jsonl)")
    parser.add_argument(
        "--threads",
        type=int,
        help="threads for TVM and torch (default: all cores); 1 is steadier "
        "on a loaded machine, where spinning thread pools stall each other",
    )
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        os.environ["TVM_NUM_THREADS"] = str(args.threads)  # read when TVM's pool starts
        torch.set_num_threads(args.threads)
    chosen = [c for c in CASES if not args.cases or any(c.name.startswith(p) for p in args.cases)]
    rows = []
    for case in chosen:
        rows.append(run_case(case, repeat=args.repeat, budget_s=args.budget))
        print(f"  done {case.name}", file=sys.stderr)
    env = environment()
    print(
        f"# {env['cpu']}, {env['cpus']} cpus, tvm {env['tvm']}, torch {env['torch']}, "
        f"commit {env['commit']}"
    )
    print(f"# threads: {args.threads or env['cpus']}")
    print_table(rows, baseline="torch")
    if args.out:
        from ember.codegen.target import host_cpu

        write_jsonl(rows, args.out, env=env, target=str(host_cpu()))


if __name__ == "__main__":
    main()
