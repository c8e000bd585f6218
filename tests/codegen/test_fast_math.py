"""Fast math: the polynomial exp/erf/tanh/sigmoid match libm to 1e-6 (relative for exp, absolute
for erf/tanh), exp flushes results below float32's smallest normal to zero, special values are exact, vectorized and scalar code agree, and builds use it by
default and drop it with `fast_math=False`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import tvm
import tvm_ffi
from tvm import s_tir, te, tirx

from ember.codegen.build import build, fuse
from ember.codegen.fast_math import fast_math
from ember.codegen.lower import to_relax
from ember.codegen.target import host_cpu
from ember.ir import Builder, interpret
from ember.ir.ops import Add, Exp, Gelu, Mul, Sigmoid, Silu, Softmax, Tanh
from ember.runtime import Executor
from tests.helpers import assert_close

LANES = 16
F32_TINY = float(np.finfo(np.float32).tiny)


def _run(fn: Callable[[Any], Any], x: np.ndarray, *, vectorize: bool) -> np.ndarray:
    """fn applied elementwise through fast_math, built for this CPU."""
    n = x.size
    x = np.concatenate([x.astype(np.float32), np.zeros(-n % LANES, np.float32)])
    a = te.placeholder((x.size,), "float32", name="a")
    out = te.compute(a.shape, lambda i: fn(a[i]), name="out")
    sch = s_tir.Schedule(fast_math(tvm.IRModule({"main": te.create_prim_func([a, out])})))
    if vectorize:
        (loop,) = sch.get_loops(sch.get_sblock("out"))
        sch.vectorize(sch.split(loop, [None, LANES])[1])
    lib = tvm.compile(sch.mod, target=host_cpu())
    result = tvm.runtime.tensor(np.empty_like(x))
    lib["main"](tvm.runtime.tensor(x), result)
    return result.numpy()[:n]


def _sweep() -> np.ndarray:
    boundaries = [-88.72, -87.34, -103.28, -103.97, -104.0, 88.72, 88.7228, 88.7229, 0.0, -0.0]
    return np.concatenate(
        [np.linspace(-110, 100, 400_001), np.linspace(-3, 3, 100_001), boundaries]
    ).astype(np.float32)


@pytest.mark.parametrize("vectorize", [False, True])
def test_exp_is_within_1e_6_relative_and_flushes_subnormals_to_zero(vectorize):
    x = _sweep()
    got = _run(tirx.exp, x, vectorize=vectorize).astype(np.float64)
    with np.errstate(over="ignore"):
        exact, libm = np.exp(x.astype(np.float64)), np.exp(x).astype(np.float64)
    kept = (x >= -87.33) & np.isfinite(libm)  # e^-87.33 is float32's smallest normal, 2^-126
    assert (exact[kept] >= F32_TINY).all()
    assert (np.abs(got[kept] - exact[kept]) / exact[kept]).max() <= 1e-6
    assert not got[x < -87.33].any()  # subnormal (and the last 0.01 of normal) results: 0, as FTZ
    assert np.array_equal(np.isinf(got), np.isinf(libm))  # overflow to inf exactly where libm does


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize(
    ("fn", "exact"),
    [
        (tirx.erf, np.vectorize(math.erf)),
        (tirx.tanh, np.tanh),
        (tirx.sigmoid, lambda x: 0.5 * (1 + np.tanh(x / 2))),
    ],
    ids=["erf", "tanh", "sigmoid"],
)
def test_erf_tanh_sigmoid_are_within_1e_6_absolute(fn, exact, vectorize):
    x = _sweep()
    got = _run(fn, x, vectorize=vectorize)
    assert np.abs(got - exact(x.astype(np.float64))).max() <= 1e-6


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (tirx.exp, [0.0, np.inf, np.nan, np.inf, 1.0]),
        (tirx.erf, [-1.0, 1.0, np.nan, 1.0, 0.0]),
        (tirx.tanh, [-1.0, 1.0, np.nan, 1.0, 0.0]),
        (tirx.sigmoid, [0.0, 1.0, np.nan, 1.0, 0.5]),
    ],
    ids=["exp", "erf", "tanh", "sigmoid"],
)
def test_special_values_are_exact(fn, expected, vectorize):
    got = _run(fn, np.array([-np.inf, np.inf, np.nan, 1e4, 0.0]), vectorize=vectorize)
    np.testing.assert_array_equal(got, np.array(expected, np.float32))


def _calls(mod: tvm.IRModule) -> set[str]:
    names: set[str] = set()

    def visit(call: Any) -> None:
        if isinstance(call.op, tvm.ir.Op):
            names.add(call.op.name)

    for _, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc):
            tvm_ffi.structural_walk(func, [(tvm.ir.Call, visit)])
    return names


def test_float32_calls_are_replaced_and_float64_ones_kept():
    b = Builder()
    x, y = b.input((4, 8), "float32", "x"), b.input((4, 8), "float64", "y")
    b.output(b.emit(Softmax(-1), x), b.emit(Gelu(), x), b.emit(Silu(), x), b.emit(Tanh(), x))
    b.output(b.emit(Softmax(-1), y))
    with tvm.target.Target(host_cpu()):
        mod = fuse(to_relax(b.build()))
    assert {"tirx.exp", "tirx.erf", "tirx.sigmoid", "tirx.tanh"} <= _calls(mod)
    rewritten = fast_math(mod)
    assert _calls(rewritten) & {"tirx.erf", "tirx.sigmoid", "tirx.tanh"} == set()
    assert "tirx.exp" in _calls(rewritten)  # the float64 softmax keeps libm


@pytest.mark.parametrize("fast", [True, False])
def test_builds_match_the_reference_with_and_without_fast_math(rng, fast):
    b = Builder()
    x = b.input((3, 5, 130), "float32", "x")
    b.output(b.emit(Softmax(-1), x), b.emit(Gelu(), x), b.emit(Gelu("tanh"), x))
    g = b.build()
    x = (rng.standard_normal((3, 5, 130)) * 4).astype(np.float32)
    got = Executor(build(g, "llvm", fast_math=fast).executable).run([x])
    for actual, want in zip(got, interpret(g, x), strict=True):
        assert_close(actual.numpy(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("schedule", [True, False])
def test_rewritten_calls_survive_inlining_into_several_reads(rng, schedule):
    b = Builder()
    x = b.input((64, 33), "float32", "x")
    e = b.emit(Exp(), x)
    t = b.emit(Tanh(), e)
    y = b.emit(Add(), b.emit(Mul(), t, t), e)  # exp and tanh are each inlined twice
    y = b.emit(Mul(), y, b.emit(Sigmoid(), y))
    b.output(y, b.emit(Softmax(-1), y))
    g = b.build()
    x = rng.standard_normal((64, 33)).astype(np.float32)
    got = Executor(build(g, "llvm", schedule=schedule).executable).run([x])
    for actual, want in zip(got, interpret(g, x), strict=True):
        assert_close(actual.numpy(), want, rtol=1e-5, atol=1e-6)
