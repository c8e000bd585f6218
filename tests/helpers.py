"""Shared test helpers: per-dtype tolerances, `assert_close`, `check_pass`, `random_inputs`,
building one op's TE compute for CPU, and running an exported library in a fresh process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ember.ir import Graph, Op, TensorType, interpret, print_graph, verify

__all__ = [
    "TOLERANCES",
    "assert_close",
    "assert_rel_close",
    "check_pass",
    "random_inputs",
    "run_compute",
    "run_exported",
]

TOLERANCES: dict[str, tuple[float, float]] = {  # dtype: (rtol, atol)
    "float64": (1e-7, 1e-9),
    "float32": (1e-5, 1e-5),
    "float16": (1e-2, 1e-2),
    "bfloat16": (2e-2, 2e-2),
}

CPU = {"kind": "llvm", "mcpu": "sapphirerapids"}


def assert_close(
    actual: np.ndarray,
    expected: np.ndarray,
    *,
    rtol: float | None = None,
    atol: float | None = None,
) -> None:
    """Exact for ints and bools, else the tolerance of expected's dtype (or the one given)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}"
    default_rtol, default_atol = TOLERANCES.get(expected.dtype.name, (0.0, 0.0))
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    np.testing.assert_allclose(
        actual.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol
    )


def run_compute(op: Op, *arrays: np.ndarray) -> list[np.ndarray]:
    """Build `op.compute` for llvm on the arrays' (static) shapes and run it."""
    import tvm
    from tvm import te

    placeholders = [
        te.placeholder(a.shape, str(a.dtype), name=f"in{i}") for i, a in enumerate(arrays)
    ]
    result: Any = op.compute(*placeholders)
    outs = list(result) if isinstance(result, tuple | list) else [result]
    lib = tvm.compile(te.create_prim_func([*placeholders, *outs]), target=CPU)
    types = op.infer(*(TensorType(a.shape, a.dtype) for a in arrays))
    types = types if isinstance(types, tuple) else (types,)
    out_arrays = [
        tvm.runtime.tensor(np.zeros([int(d) for d in t.shape], t.dtype.numpy)) for t in types
    ]
    lib(*(tvm.runtime.tensor(a) for a in arrays), *out_arrays)
    return [o.numpy() for o in out_arrays]


def random_inputs(
    g: Graph, rng: np.random.Generator, sizes: dict[str, int] | None = None
) -> list[np.ndarray]:
    """Seeded random inputs for a graph's signature; symbols take `sizes` (default 3)."""
    import sympy

    env = {s: (sizes or {}).get(s.name, 3) for v in g.inputs for s in v.type.symbols}
    arrays = []
    for v in g.inputs:
        shape = [int(sympy.sympify(d).subs(env)) for d in v.type.shape]
        dtype = v.type.dtype.numpy
        if v.type.dtype.is_float:
            arrays.append(rng.standard_normal(shape).astype(dtype))
        elif v.type.dtype.value == "bool":
            arrays.append(rng.random(shape) < 0.5)
        else:
            arrays.append(rng.integers(0, 4, shape).astype(dtype))
    return arrays


def check_pass(
    graph_pass: Callable[..., Graph], before: Graph, expected: Graph, **options: object
) -> Graph:
    """Run the pass, verify, compare structure with `expected` and numerics with `before`."""
    after = verify(graph_pass(before, **options))
    assert print_graph(after) == print_graph(expected), (
        f"structure differs\n--- after\n{print_graph(after)}\n--- expected\n{print_graph(expected)}"
    )
    inputs = random_inputs(before, np.random.default_rng(0))
    for got, want in zip(interpret(after, *inputs), interpret(before, *inputs), strict=True):
        assert_close(got, want)
    return after


def assert_rel_close(actual: Any, expected: Any, rtol: float = 1e-4) -> None:
    """max|actual - expected| <= rtol * max|expected| (the model-level check against eager)."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"shape {a.shape} != {e.shape}"
    err = float(np.abs(a - e).max()) if a.size else 0.0
    scale = float(np.abs(e).max()) if e.size else 0.0
    assert err <= rtol * max(scale, 1e-30), (
        f"max abs error {err:.3g} > {rtol} * max|expected| {scale:.3g}"
    )


def run_exported(library: str, x: np.ndarray, tmp_path: Path) -> np.ndarray:
    """The single output of the exported `library` on `x`, run by `ember.runtime` in a fresh
    Python that must load neither ember's compiler passes nor torch."""
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys, numpy as np, ember.runtime\n"
        f"m = ember.runtime.load({library!r})\n"
        f"(y,) = m(np.load({str(tmp_path / 'x.npy')!r}))\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, np.asarray(y))\n"
        "assert 'ember.passes' not in sys.modules and 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    return np.load(tmp_path / "y.npy")
