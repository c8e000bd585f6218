"""flat_matmul with a symbolic M: one build picks the table's kernel by M at run time (TIR
branches for gemv/flat, a Relax If for gemm); every M against numpy, which branch ran, the
exported library, CUDA to PTX."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import sympy
import tvm

from ember.api import compile_graph
from ember.codegen.flat_gemm import dispatch_condition, profile_dispatch
from ember.codegen.lower import to_relax
from ember.codegen.target import resolve_target
from ember.ir import Builder
from ember.ir.ops import FlatMatMul, dispatch_kernel, pack_panels
from ember.runtime.library import ffi
from ember.runtime.profiling import profile_call
from tests.helpers import run_exported

# a kernel change at every bound: gemv for M = 1, flat 2..8, gemm 9..16, flat again above
TABLE = ((1, "gemv"), (8, "flat"), (16, "gemm"), (32, "flat"))
ROWS = (1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 17, 29, 32, 45)  # every interval and tail count


def _linear(k: int, n: int, dispatch: tuple[tuple[int, str], ...]) -> tuple:
    w = np.random.default_rng(0).standard_normal((k, n)).astype(np.float32)
    b = Builder("linear")
    x = b.input((sympy.Symbol("m"), k), "float32", "x")
    b.output(b.emit(FlatMatMul(columns=n, dispatch=dispatch), x, b.const(pack_panels(w, 32))))
    return b.build(), w


def _x(m: int, k: int) -> np.ndarray:
    return np.random.default_rng(m).standard_normal((m, k)).astype(np.float32)


def test_dispatch_conditions():
    m = tvm.tirx.Var("m", "int64")
    text = {name: str(dispatch_condition(TABLE, m, {name})) for name in ("gemv", "flat", "gemm")}
    assert text["gemv"] == "m <= T.int64(1)"
    assert text["gemm"] == "m > T.int64(8) and m <= T.int64(16)"
    assert text["flat"] == "m > T.int64(1) and m <= T.int64(8) or m > T.int64(16)"
    assert dispatch_condition(((4, "flat"), (64, "gemv")), m, {"gemm"}) is False
    assert dispatch_condition(((4, "gemm"),), m, {"gemm"}) is True


def test_one_symbolic_build_runs_each_branch(tmp_path):
    graph, w = _linear(36, 80, TABLE)  # 80: the last panel is partial
    with tvm.target.Target(resolve_target("llvm")):
        script = to_relax(graph).script()
    assert "if m <= T.int64(1):" in script  # gemv or flat: inside the kernels' PrimFunc
    assert "if m > 8 and m <= 16:" in script  # gemm: a Relax If around the calls
    program = compile_graph(graph, "llvm", (), cache=False)
    vm = program.executor.vm
    for m in ROWS:
        x = _x(m, 36)
        ran = {r.name for r in profile_call(vm, ffi(), lambda x=x: program.run([x]))}
        kernel = dispatch_kernel(TABLE, m)
        assert ("flat_matmul_gemm" in ran) == (kernel == "gemm"), (m, ran)
        assert ("flat_gemm_0" in ran) == (kernel != "gemm"), (m, ran)
        got = program.run([x])[0].numpy()
        np.testing.assert_allclose(got, x @ w, rtol=1e-5, atol=1e-4, err_msg=f"M = {m}")
    library = program.export(tmp_path / "linear.so")
    for m in (1, 12, 45):  # a fresh process: the table and the branches are in the library
        x = _x(m, 36)
        np.testing.assert_allclose(run_exported(library, x, tmp_path), x @ w, rtol=1e-5, atol=1e-4)


def test_profile_of_the_symbolic_kernels():
    table = profile_dispatch(64, 32, rows=(1, 3, 9), symbolic=True)  # one build per kernel
    assert table[-1][0] == 9
    assert [bound for bound, _ in table] == sorted({bound for bound, _ in table})
    assert {kernel for _, kernel in table} <= {"gemv", "flat", "gemm"}


@pytest.mark.parametrize("table", [((1, "gemv"), (64, "flat")), ((4, "flat"), (64, "gemm"))])
def test_tables_without_one_kernel(table):
    graph, w = _linear(64, 32, table)
    program = compile_graph(graph, "llvm", (), cache=False)
    for m in (1, 4, 6, 70):
        x = _x(m, 64)
        np.testing.assert_allclose(program.run([x])[0].numpy(), x @ w, rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_cuda_symbolic_build_compiles_to_ptx(tmp_path):
    from ember.codegen.build import build
    from ember.codegen.gpu import emit_source

    target = {"kind": "cuda", "arch": "sm_80"}
    graph, _ = _linear(64, 64, TABLE)
    paths = emit_source(build(graph, target), target, tmp_path)
    entries = re.findall(r"\.entry (\w+)\(", paths[1].read_text())
    assert {"flat_gemm_0_kernel", "flat_matmul_gemm_kernel"} <= set(entries)
    assert "if (m <= (int64_t)1)" in paths[0].read_text()
