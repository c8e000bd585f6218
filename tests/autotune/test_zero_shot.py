"""Zero-shot schedules: chosen by the cost model without measuring, numerically correct, applied
where the option says and never to symbolic kernels."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

pytest.importorskip("xgboost")

from ember.autotune.tasks import fused_module
from ember.autotune.zero_shot import kernels_to_schedule, zero_shot_schedules
from ember.codegen.build import build
from ember.codegen.target import resolve_target
from ember.errors import TuningError
from ember.ir import Builder, Graph, interpret, sym
from ember.ir.ops import Add, Conv, MatMul, Relu, Softmax
from ember.runtime import Executor


def _conv_dense(rng: np.random.Generator) -> Graph:
    """relu(conv3x3(x)) (a kernel ember's Fallback rule schedules), a reshape (Elementwise rule),
    a dense layer (Matmul rule) and a softmax (RowReduction rule)."""
    b = Builder("conv_dense")
    x = b.input((1, 8, 16, 16), name="x")
    w = b.const(rng.standard_normal((16, 8, 3, 3)).astype(np.float32) * 0.1)
    y = b.emit(Relu(), b.emit(Conv((1, 1), (1, 1, 1, 1), (1, 1), 1), x, w))
    from ember.ir.ops import Reshape

    flat = b.emit(Reshape((16, 256)), y)
    dense = b.emit(MatMul(), flat, b.const(rng.standard_normal((256, 64)).astype(np.float32)))
    b.output(b.emit(Softmax(-1), dense))
    return b.build()


def _scheduled_by_zero_shot(g: Graph, kernels: str) -> list[str]:
    spec = resolve_target("llvm")
    mod = fused_module(g, spec)
    mod = zero_shot_schedules(mod, spec, kernels=kernels, candidates=8)
    return sorted(
        gv.name_hint
        for gv, func in mod.functions_items()
        if int(getattr(func, "attrs", {}).get("tirx.is_scheduled", 0)) == 1
    )


@pytest.mark.parametrize("kernels", ["fallback", "all"])
def test_zero_shot_build_matches_reference(rng: np.random.Generator, kernels: str) -> None:
    g = _conv_dense(rng)
    x = rng.standard_normal((1, 8, 16, 16)).astype(np.float32)
    zero_shot = partial(zero_shot_schedules, kernels=kernels, candidates=8)
    (out,) = Executor(build(g, "llvm", zero_shot=zero_shot).executable).run([x])
    (expected,) = interpret(g, x)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_fallback_mode_takes_only_kernels_without_a_specific_rule(rng: np.random.Generator) -> None:
    spec = resolve_target("llvm")
    mod = fused_module(_conv_dense(rng), spec)
    every = sorted(gv.name_hint for gv, _ in kernels_to_schedule(mod, spec, "all"))
    fallback = [gv.name_hint for gv, _ in kernels_to_schedule(mod, spec, "fallback")]
    assert every == ["fused_conv_relu", "packed_matmul", "reshape", "softmax"]
    assert fallback == ["fused_conv_relu"]
    assert set(_scheduled_by_zero_shot(_conv_dense(rng), "fallback")) <= set(fallback)


def test_off_and_symbolic_kernels_are_untouched(rng: np.random.Generator) -> None:
    assert _scheduled_by_zero_shot(_conv_dense(rng), "off") == []
    b = Builder("dynamic")
    n = sym("n")
    x = b.input((n, 64), name="x")
    w = b.const(rng.standard_normal((64, 64)).astype(np.float32))
    b.output(b.emit(Relu(), b.emit(Add(), b.emit(MatMul(), x, w), x)))
    assert _scheduled_by_zero_shot(b.build({"n": (1, 256)}), "all") == []


def test_unknown_mode_is_refused() -> None:
    spec = resolve_target("llvm")
    with pytest.raises(TuningError, match="zero_shot must be 'off', 'fallback' or 'all'"):
        zero_shot_schedules(object(), spec, kernels="some")  # type: ignore[arg-type]


def test_compile_graph_option(rng: np.random.Generator) -> None:
    from ember.api import compile_graph

    g = _conv_dense(rng)
    x = rng.standard_normal((1, 8, 16, 16)).astype(np.float32)
    program = compile_graph(g, "llvm", zero_shot="fallback", cache=False)
    (expected,) = interpret(g, x)
    np.testing.assert_allclose(program.run([x])[0].numpy(), expected, rtol=1e-4, atol=1e-5)
