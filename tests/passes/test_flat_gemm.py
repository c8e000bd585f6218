"""flat_matmul (flat GEMM with a heuristic dataflow): each kernel against numpy, the dispatch
table from profiled times, the pass, the table kept in an exported artifact; CUDA to PTX."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from ember.api import compile_graph
from ember.codegen.flat_gemm import tables_from_times
from ember.ir import Builder, interpret
from ember.ir.ops import FlatMatMul, dispatch_kernel, pack_panels
from ember.ir.serialize import from_json, to_json
from ember.passes.flat_gemm import flat_gemm, linear_shapes


def _linear(m: int, k: int, n: int, dispatch: tuple[tuple[int, str], ...]) -> tuple:
    rng = np.random.default_rng(m)
    w = rng.standard_normal((k, n)).astype(np.float32)
    b = Builder("linear")
    x = b.input((m, k), "float32", "x")
    b.output(b.emit(FlatMatMul(columns=n, dispatch=dispatch), x, b.const(pack_panels(w, 32))))
    return b.build(), w, rng.standard_normal((m, k)).astype(np.float32)


@pytest.mark.parametrize("kernel", ["gemv", "flat", "gemm"])
def test_kernels_match_numpy(kernel):
    for m in (1, 11):  # 11: one full tile of 8 rows and a tile of 3
        graph, w, x = _linear(m, 36, 64, ((0, kernel),))
        got = compile_graph(graph, "llvm", (), cache=False).run([x])[0].numpy()
        np.testing.assert_allclose(got, x @ w, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(interpret(graph, x)[0], x @ w, rtol=1e-5, atol=1e-4)


def test_dispatch_table_records_inflection_points():
    times = {1: {"gemv": 1, "flat": 2, "gemm": 3}, 4: {"gemv": 3, "flat": 1, "gemm": 2},
             16: {"gemv": 9, "flat": 1, "gemm": 2}, 64: {"gemv": 9, "flat": 3, "gemm": 2}}  # fmt: skip
    table = tables_from_times(times)
    assert table == ((1, "gemv"), (16, "flat"), (64, "gemm"))
    assert [dispatch_kernel(table, m) for m in (1, 2, 16, 17, 200)] == [
        "gemv", "flat", "flat", "gemm", "gemm"]  # fmt: skip


def test_pass_rewrites_small_m_linears_and_export_keeps_the_table(tmp_path):
    from ember.ir.ops import MatMul, Transpose
    from ember.runtime import load

    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 32)).astype(np.float32)  # Linear's [N, K] weight, transposed
    b = Builder("mlp")
    x = b.input((2, 1, 32), "float32", "x")
    b.output(b.emit(MatMul(), x, b.emit(Transpose(perm=(1, 0)), b.const(w))))
    graph = b.build()
    assert linear_shapes(graph) == [(64, 32)]
    table = ((1, "gemv"), (8, "flat"), (64, "gemm"))
    rewritten = flat_gemm(graph, dispatch={(64, 32): table})
    assert [n.op.dispatch for n in rewritten.nodes if isinstance(n.op, FlatMatMul)] == [table]
    assert [n.op for n in from_json(to_json(rewritten)).nodes] == [n.op for n in rewritten.nodes]
    data = rng.standard_normal((2, 1, 32)).astype(np.float32)
    program = compile_graph(rewritten, "llvm", (), cache=False)
    np.testing.assert_allclose(program.run([data])[0].numpy(), data @ w.T, rtol=1e-5, atol=1e-4)
    loaded = load(program.export(tmp_path / "mlp.so"))
    assert "flat_matmul[columns=64,dispatch=((1,gemv),(8,flat),(64,gemm))]" in loaded.metadata.ir
    np.testing.assert_allclose(loaded(data)[0], data @ w.T, rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_cuda_build_compiles_to_ptx(tmp_path):
    from ember.codegen.build import build
    from ember.codegen.gpu import emit_source

    target = {"kind": "cuda", "arch": "sm_80"}
    graph, _, _ = _linear(5, 64, 64, ((8, "flat"),))
    paths = emit_source(build(graph, target), target, tmp_path)
    assert "flat_gemm_0_kernel" in re.findall(r"\.entry (\w+)\(", paths[1].read_text())
