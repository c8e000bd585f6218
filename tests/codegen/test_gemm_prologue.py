"""GEMM prologues: a gather or concat read only as a CPU matmul's A operand is lowered into the
matmul's function (no kernel of its own, no A written to memory first), and a gather is
injective, so it fuses into an elementwise kernel reading it. Results match the interpreter for
symbolic, ragged and whole-tile row counts; a concat with a second reader stays a kernel."""

from __future__ import annotations

import numpy as np
import pytest
import tvm

from ember.codegen.build import build, fuse
from ember.codegen.cpu_matmul import panel_width
from ember.codegen.lower import to_relax
from ember.codegen.pack_weights import pack_matmul_weights
from ember.codegen.target import host_cpu
from ember.ir import Builder, Graph, interpret, sym
from ember.ir.ops import Add, Concat, Gather, MatMul, Mul, Sigmoid
from ember.runtime import Executor
from tests.helpers import assert_close


def _node_cell(rng: np.random.Generator, rows: object, *, concat_escapes: bool = False) -> Graph:
    """sigmoid(concat(h[i], h[j]) @ w + b) * c[i]: a TreeLSTM node's shape of computation."""
    b = Builder()
    h = b.input((sym("n"), 16), "float32", "h")
    c = b.input((sym("n"), 64), "float32", "c")
    i = b.input((rows,), "int64", "i")
    j = b.input((rows,), "int64", "j")
    joined = b.emit(Concat(1), b.emit(Gather(0), h, i), b.emit(Gather(0), h, j))
    w = b.const((rng.standard_normal((32, 64)) / 6).astype(np.float32))
    gates = b.emit(MatMul(), joined, w)
    gates = b.emit(Add(), gates, b.const(rng.standard_normal(64).astype(np.float32)))
    b.output(b.emit(Mul(), b.emit(Sigmoid(), gates), b.emit(Gather(0), c, i)))
    if concat_escapes:
        b.output(joined)
    return b.build()


def _kernels(g: Graph) -> list[str]:
    target = tvm.target.Target(host_cpu())
    wide = panel_width(target, symbolic_rows=True)
    g = pack_matmul_weights(g, panel=panel_width(target), wide_panel=wide)
    with target:
        mod = fuse(to_relax(g))
    return sorted(
        gv.name_hint for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)
    )


def _inputs(rng: np.random.Generator, rows: int) -> list[np.ndarray]:
    n = 11
    return [
        rng.standard_normal((n, 16)).astype(np.float32),
        rng.standard_normal((n, 64)).astype(np.float32),
        rng.integers(0, n, rows).astype(np.int64),
        rng.integers(-n, n, rows).astype(np.int64),  # negative indices count from the end
    ]


def test_the_prologue_is_lowered_into_the_matmul(rng):
    kernels = _kernels(_node_cell(rng, sym("batch")))
    # h[i], h[j] and the concat are inside the matmul; c[i] is read by the matmul's epilogue
    # (FuseOps fuses no producer into a matmul's group), so it stays a kernel
    assert kernels == ["fused_packed_matmul_add_sigmoid_mul", "gather"]


def test_a_gather_fuses_into_its_elementwise_reader(rng):
    b = Builder()
    c, i = b.input((sym("n"), 8), "float32", "c"), b.input((sym("batch"),), "int64", "i")
    b.output(b.emit(Sigmoid(), b.emit(Gather(0), c, i)))
    g = b.build()
    assert _kernels(g) == ["fused_gather_sigmoid"]
    inputs = [rng.standard_normal((5, 8)).astype(np.float32), np.array([4, 0, -1], np.int64)]
    got = Executor(build(g, "llvm").executable).run(inputs)[0].numpy()
    assert_close(got, interpret(g, *inputs)[0])


def test_a_concat_read_twice_stays_a_kernel(rng):
    kernels = _kernels(_node_cell(rng, sym("batch"), concat_escapes=True))
    assert any(k.endswith("concat") for k in kernels), kernels
    assert not any("concat" in k and "matmul" in k for k in kernels), kernels


@pytest.mark.parametrize(("rows", "symbolic"), [(1, True), (7, True), (48, True), (13, False),
                                                 (16, False)])  # fmt: skip
def test_results_match_the_interpreter(rng, rows, symbolic):
    for escapes in (False, True):
        g = _node_cell(rng, sym("batch") if symbolic else rows, concat_escapes=escapes)
        inputs = _inputs(rng, rows)
        got = Executor(build(g, "llvm").executable).run(inputs)
        for a, want in zip(got, interpret(g, *inputs), strict=True):
            assert_close(a.numpy(), want)
