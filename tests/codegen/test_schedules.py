"""Default CPU schedules: each rule fires on its pattern, declines the rest, and the scheduled
build matches the reference interpreter (odd sizes, symbolic dims, fused epilogues)."""

from __future__ import annotations

import numpy as np
import pytest
import tvm

from ember.codegen.build import build, fuse
from ember.codegen.cpu_elementwise import Elementwise
from ember.codegen.cpu_fallback import Fallback
from ember.codegen.cpu_gemv import GEMV
from ember.codegen.cpu_matmul import Matmul
from ember.codegen.cpu_reduction import RowReduction
from ember.codegen.lower import to_relax
from ember.codegen.schedule import default_schedule_rules
from ember.codegen.target import host_cpu
from ember.ir import Builder, Graph, interpret, sym
from ember.ir.ops import (
    Add,
    Cast,
    Gelu,
    LayerNorm,
    MatMul,
    Mul,
    ReduceMax,
    ReduceSum,
    Sigmoid,
    Softmax,
    Transpose,
)
from ember.runtime import Executor
from tests.helpers import assert_close

RULES = {
    "matmul": Matmul,
    "elementwise": Elementwise,
    "reduction": RowReduction,
    "fallback": Fallback,
}


def _fused(g: Graph) -> list[tvm.tirx.PrimFunc]:
    target = tvm.target.Target(host_cpu())
    with target:
        mod = fuse(to_relax(g))
    return [f for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]


def _firing(g: Graph) -> set[str]:
    """Names of the rules that schedule at least one of g's fused functions (first match wins)."""
    target = tvm.target.Target(host_cpu())
    fired = set()
    for func in _fused(g):
        for name, rule in RULES.items():
            if rule().apply(func, target, False) is not None:
                fired.add(name)
                break
    return fired


def _check(g: Graph, *inputs: np.ndarray, rtol: float = 1e-4, atol: float = 1e-4) -> None:
    """The scheduled build agrees with the reference interpreter."""
    got = Executor(build(g, "llvm").executable).run(list(inputs))
    for actual, want in zip(got, interpret(g, *inputs), strict=True):
        assert_close(actual.numpy(), want, rtol=rtol, atol=atol)


def _linear(x_shape: tuple, k: int, n: int, rng: np.random.Generator, *, epilogue: bool) -> Graph:
    b = Builder()
    x = b.input(x_shape, "float32", "x")
    y = b.emit(MatMul(), x, b.const(rng.standard_normal((k, n)).astype(np.float32)))
    if epilogue:
        y = b.emit(Add(), y, b.const(rng.standard_normal(n).astype(np.float32)))
        y = b.emit(Gelu(), y)
    b.output(y)
    return b.build()


def test_rules_for_cpu_end_with_the_fallback():
    rules = default_schedule_rules(host_cpu())
    assert isinstance(rules[-1], Fallback)
    assert any(isinstance(r, Matmul) for r in rules)


def test_odd_matmul_with_bias_is_tiled(rng):
    b = Builder()
    x, w = b.input((257, 63), "float32", "x"), b.input((63, 129), "float32", "w")
    b.output(
        b.emit(Add(), b.emit(MatMul(), x, w), b.const(rng.standard_normal(129).astype(np.float32)))
    )
    g = b.build()
    assert _firing(g) == {"matmul"}
    _check(
        g,
        rng.standard_normal((257, 63)).astype(np.float32),
        rng.standard_normal((63, 129)).astype(np.float32),
    )


def test_matmul_with_transposed_weight(rng):
    b = Builder()
    x, w = b.input((64, 48), "float32", "x"), b.input((96, 48), "float32", "w")
    b.output(b.emit(MatMul(), x, b.emit(Transpose((1, 0)), w)))
    g = b.build()
    assert _firing(g) == {"matmul", "elementwise"}  # FuseOps keeps the transpose apart
    _check(
        g,
        rng.standard_normal((64, 48)).astype(np.float32),
        rng.standard_normal((96, 48)).astype(np.float32),
    )


def test_linear_gelu_epilogue_is_fused_into_the_tile_store(rng):
    g = _linear((2, 24, 64), 64, 128, rng, epilogue=True)
    (func,) = _fused(g)
    sch = Matmul().apply(func, tvm.target.Target(host_cpu()), False)
    assert sch is not None
    names = {sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))}
    assert not names & {"T_add", "out"}  # bias and gelu live in the tile store: no extra pass
    _check(g, rng.standard_normal((2, 24, 64)).astype(np.float32))


@pytest.mark.parametrize("length", [1, 5, 37])
def test_linear_with_symbolic_rows(rng, length):
    g = _linear((2, sym("seq"), 64), 64, 40, rng, epilogue=True)
    assert _firing(g) == {"matmul"}
    _check(g, rng.standard_normal((2, length, 64)).astype(np.float32))


def test_symbolic_rows_matmul_pads_a_once_and_keeps_its_compute_scope(rng):
    """A dynamic-batch matmul: A is zero-padded by its own block (no row check in the inner
    loop), and the build keeps the kernels' noalias compute scopes although the module holds
    VMShapeLower's shape function (without them the accumulators are stored every k step)."""
    g = _linear((sym("batch"), 64), 64, 40, rng, epilogue=True)
    (func,) = [f for f in _fused(g) if "matmul" in f.script()]
    sch = Matmul().apply(func, tvm.target.Target(host_cpu()), False)
    names = {sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))}
    assert any(name.endswith("_reindex_pad") for name in names)
    assert "if_then_else" not in str(sch.get(sch.get_sblock("matmul_update")))
    executable = build(g, "llvm").executable
    asm = executable.mod.imports[0].inspect_source("asm")
    assert "fused_matmul" in asm or "fused_packed_matmul" in asm
    assert "_compute_:" in asm
    _check(g, rng.standard_normal((13, 64)).astype(np.float32))


def test_batch_matmul_broadcasts_batch_dims(rng):
    b = Builder()
    x, y = b.input((2, 3, 17, 32), "float32", "x"), b.input((3, 32, 40), "float32", "y")
    b.output(b.emit(MatMul(), x, y))
    g = b.build()
    assert _firing(g) == {"matmul"}
    _check(
        g,
        rng.standard_normal((2, 3, 17, 32)).astype(np.float32),
        rng.standard_normal((3, 32, 40)).astype(np.float32),
    )


def test_attention_scores_with_symbolic_sequence(rng):
    b = Builder()
    seq = sym("seq")
    q, k = b.input((2, seq, 16), "float32", "q"), b.input((2, seq, 16), "float32", "k")
    b.output(b.emit(Softmax(-1), b.emit(MatMul(), q, b.emit(Transpose((0, 2, 1)), k))))
    g = b.build()
    for length in (3, 20):
        _check(g, *(rng.standard_normal((2, length, 16)).astype(np.float32) for _ in range(2)))


@pytest.mark.parametrize("m", [1, 4])
def test_decode_shaped_matmul(rng, m):
    b = Builder()
    x = b.input((m, 256), "float32", "x")
    w = b.const(rng.standard_normal((256, 320)).astype(np.float32))
    wt = b.const(rng.standard_normal((320, 256)).astype(np.float32))
    b.output(b.emit(MatMul(), x, w), b.emit(MatMul(), x, b.emit(Transpose((1, 0)), wt)))
    _check(b.build(), rng.standard_normal((m, 256)).astype(np.float32), rtol=1e-4, atol=1e-3)


def test_elementwise_broadcast_transpose_and_cast(rng):
    b = Builder()
    x = b.input((sym("n"), 33), "float32", "x")
    y = b.emit(Mul(), b.emit(Add(), x, b.const(rng.standard_normal(33).astype(np.float32))), x)
    b.output(b.emit(Cast("float16"), b.emit(Transpose((1, 0)), y)), b.emit(Gelu(), x))
    g = b.build()
    assert _firing(g) == {"elementwise"}
    for n in (1, 7, 130):
        _check(g, rng.standard_normal((n, 33)).astype(np.float32), rtol=1e-3, atol=1e-3)


def test_large_odd_elementwise(rng):
    b = Builder()
    x = b.input((10007,), "float32", "x")
    b.output(b.emit(Gelu(), b.emit(Add(), x, x)))
    _check(b.build(), rng.standard_normal(10007).astype(np.float32))


@pytest.mark.parametrize("shape", [(3, 5, 129), (8, 4, 16, 128)])
def test_softmax_rows(rng, shape):
    b = Builder()
    b.output(b.emit(Softmax(-1), b.input(shape, "float32", "x")))
    g = b.build()
    assert _firing(g) == {"reduction"}
    _check(g, rng.standard_normal(shape).astype(np.float32), rtol=1e-5, atol=1e-6)


def test_layer_norm_with_symbolic_rows(rng):
    b = Builder()
    x = b.input((sym("n"), 7, 256), "float32", "x")
    w, bias = (b.const(rng.standard_normal(256).astype(np.float32)) for _ in range(2))
    b.output(b.emit(LayerNorm(-1, 1e-5), x, w, bias))
    g = b.build()
    assert _firing(g) == {"reduction"}
    for n in (1, 3):
        _check(g, rng.standard_normal((n, 7, 256)).astype(np.float32))


def test_reductions_over_last_and_first_axis(rng):
    b = Builder()
    x = b.input((19, 96), "float32", "x")
    b.output(b.emit(ReduceSum((-1,)), x), b.emit(ReduceMax((0,)), x))
    _check(b.build(), rng.standard_normal((19, 96)).astype(np.float32))


def test_rules_decline_other_patterns(rng):
    target = tvm.target.Target(host_cpu())
    b = Builder()
    b.output(b.emit(Softmax(-1), b.input((4, 64), "float32", "x")))
    (softmax,) = _fused(b.build())
    (linear,) = _fused(_linear((4, 64), 64, 32, rng, epilogue=False))
    assert Matmul().apply(softmax, target, False) is None
    assert Elementwise().apply(softmax, target, False) is None
    assert Elementwise().apply(linear, target, False) is None
    assert RowReduction().apply(linear, target, False) is None
    assert (
        Matmul().apply(softmax, tvm.target.Target({"kind": "cuda", "arch": "sm_90"}), False) is None
    )


def test_length_one_reduction_is_not_treated_as_elementwise(rng):
    """An outer product written as matmul with k = 1 plus an add: once wrongly inlined."""
    from ember.api import compile_graph
    from ember.ir import Builder, interpret
    from ember.ir.ops import Add, MatMul

    b = Builder()
    col = b.input((2, 4, 8, 1), "float32", name="col")
    row = b.input((2, 4, 1, 8), "float32", name="row")
    bias = b.input((2, 4, 8, 8), "float32", name="bias")
    b.output(b.emit(Add(), bias, b.emit(MatMul(), col, row)))
    g = b.build()
    arrays = [rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs]
    got = compile_graph(g, cache=False).run(arrays)[0].numpy()
    np.testing.assert_allclose(got, interpret(g, *arrays)[0], rtol=1e-5, atol=1e-6)


def test_gemv_gate_keeps_reduction_loops_rolled(rng):
    """A [256, 128] @ [128, 1] router gate (Qwen2-MoE): dlight's full unroll of the reduction inside
    a 128-lane vector loop took LLVM minutes; ember's GEMV drops the unroll and stays correct."""
    b = Builder()
    x = b.input((256, 128), "float32", "x")
    gate = b.emit(MatMul(), x, b.const(rng.standard_normal((128, 1)).astype(np.float32)))
    b.output(b.emit(Sigmoid(), gate))
    g = b.build()
    target = tvm.target.Target(host_cpu())
    (func,) = [f for f in _fused(g) if GEMV().apply(f, target, False) is not None]
    script = GEMV().apply(func, target, False).mod.script()
    assert "vectorized" in script
    assert "pragma_auto_unroll_max_step" not in script
    _check(g, rng.standard_normal((256, 128)).astype(np.float32), atol=1e-5)


def test_matmul_with_a_reduction_of_one(rng):
    """K = 1 ([1,4,1,1] @ [1,4,1,64], from a quantized attention): dlight's GEMV asserts it has a
    reduction loop; ember's GEMV declines and the next rule schedules it."""
    b = Builder()
    x = b.input((1, 4, 1, 1), "float32", "x")
    w = b.input((1, 4, 1, 64), "float32", "w")
    b.output(b.emit(MatMul(), x, w))
    _check(b.build(), rng.standard_normal((1, 4, 1, 1)).astype(np.float32),
           rng.standard_normal((1, 4, 1, 64)).astype(np.float32))  # fmt: skip
