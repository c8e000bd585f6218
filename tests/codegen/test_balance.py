"""Balanced parallel tiles (codegen/balance.py): an annotated tile loop becomes two workers meeting
in the middle; every tile is computed (results equal numpy for every pool size, including one
thread and more threads than workers); a loop whose tiles read what they write is left alone;
ember's matmuls and MoE row-GEMMs with big enough tiles are built balanced on this CPU and still
give the right results."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tvm
import tvm_ffi
from tvm import tirx
from tvm.script import tirx as T

from ember.codegen import row_gemm
from ember.codegen.balance import BALANCE, balance_parallel_tiles, tir_pipeline
from ember.codegen.target import host_cpu

ROWS, K, N = 4, 32, 48
HOST = tvm.target.Target(host_cpu())


@T.prim_func
def _rows_times_w(a_h: T.handle, w: T.Buffer((K, N), "float32"), c_h: T.handle):
    """c = a @ w, one parallel tile per 4 rows (annotated: a tile writes c from a and w)."""
    T.func_attr({"tirx.noalias": True, "global_symbol": "main"})
    m = T.int64()
    a = T.match_buffer(a_h, (m, K), "float32")
    c = T.match_buffer(c_h, (m, N), "float32")
    for t in T.parallel((m + ROWS - 1) // ROWS, annotations={BALANCE: 1}):
        acc = T.decl_buffer((N,), "float32", scope="local")
        for i in range(ROWS):
            if t * ROWS + i < m:
                for j in range(N):
                    acc[j] = T.float32(0)
                for k, j in T.grid(K, N):
                    acc[j] = acc[j] + a[t * ROWS + i, k] * w[k, j]
                for j in range(N):
                    c[t * ROWS + i, j] = acc[j]


@T.prim_func
def _add_one_in_place(x_h: T.handle):
    """x += 1: a second run of a tile would add 2 (annotated, but must not be balanced)."""
    T.func_attr({"tirx.noalias": True, "global_symbol": "main"})
    m = T.int64()
    x = T.match_buffer(x_h, (m,), "float32")
    for t in T.parallel(m, annotations={BALANCE: 1}):
        x[t] = x[t] + T.float32(1)


def _lowered(func: tirx.PrimFunc) -> tvm.IRModule:
    mod = tirx.transform.BindTarget(HOST.with_host(HOST))(tvm.IRModule({"main": func}))
    lower, _, _ = tirx.get_tir_pipeline("default")
    return lower(mod)


def _whiles(mod: tvm.IRModule) -> int:
    found = []
    tvm_ffi.structural_map(mod["main"], [(tirx.While, lambda w: found.append(w) or w)])
    return len(found)


def test_annotated_tile_loop_becomes_two_workers_meeting_in_the_middle() -> None:
    balanced = balance_parallel_tiles(2)(_lowered(_rows_times_w))
    assert _whiles(balanced) == 1
    assert "balance_done" in balanced.script()


def test_a_loop_whose_tiles_read_what_they_write_is_left_alone() -> None:
    lowered = _lowered(_add_one_in_place)
    assert tvm_ffi.structural_equal(balance_parallel_tiles(2)(lowered), lowered)
    lib = tvm.tirx.build(tvm.IRModule({"main": _add_one_in_place}), HOST,
                         pipeline=tir_pipeline(HOST))  # fmt: skip
    x = np.arange(37, dtype=np.float32)
    arr = tvm.runtime.tensor(x)
    lib["main"](arr)
    np.testing.assert_array_equal(arr.numpy(), x + 1)


_EVERY_TILE = textwrap.dedent(
    """
    import numpy as np, torch, tvm, ember
    from ember.codegen.balance import tir_pipeline
    from tests.codegen.test_balance import _rows_times_w, HOST, K, N
    four = tvm.target.Target({**HOST.export(), "num-cores": 4})  # two pairs of workers
    libs = [tvm.tirx.build(tvm.IRModule({"main": _rows_times_w}), HOST, pipeline=tir_pipeline(t))
            for t in (HOST, four)]
    rng = np.random.default_rng(0)
    w = rng.standard_normal((K, N), dtype=np.float32)
    linear = torch.nn.Linear(512, 96)  # 6 x 64 x 512 per tile: balanced
    model = ember.compile(linear, [torch.randn(8, 512)], dynamic={0: {0: ("batch", 1, 4096)}},
                          cache=False)  # a fresh build: its LLVM source is inspected
    (kernels,) = model.programs[0].executor.executable.mod.imports
    assert "llvm.x86.sse2.mfence" in kernels.inspect_source("ll")  # its matmul is balanced
    for m in (1, 3, 4, 5, 17, 64, 243):
        a = rng.standard_normal((m, K), dtype=np.float32)
        for lib in libs:
            for _ in range(20):  # a race would show up in some run
                c = tvm.runtime.tensor(np.full((m, N), np.nan, np.float32))
                lib["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(w), c)
                np.testing.assert_allclose(c.numpy(), a @ w, rtol=1e-5, atol=1e-4)
        x = torch.randn(m, 512)
        torch.testing.assert_close(model(x), linear(x).detach(), rtol=1e-5, atol=1e-5)
    print("ok")
    """
)


@pytest.mark.skipif(tir_pipeline(HOST) == "default", reason="balancing is for x86, even cores")
@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_every_tile_is_computed_for_any_pool_size(threads: int) -> None:
    """For one pair of workers and for two: fewer threads run workers in turn, more leave some
    idle. ember's Linear (a balanced symbolic-M matmul) equals torch's too."""
    env = {**os.environ, "TVM_NUM_THREADS": str(threads)}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-c", _EVERY_TILE], env=env, cwd=root,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")


@pytest.mark.skipif(tir_pipeline(HOST) == "default", reason="balancing is for x86, even cores")
@pytest.mark.parametrize(("k", "balanced"), [(512, True), (24, False)])
def test_moe_row_gemm_is_balanced_when_its_tiles_are_big_enough(k: int, balanced: bool) -> None:
    """A row tile is 6 rows x every column: 6 x 128 x 512 FMAs is enough, 6 x 128 x 24 is not."""
    experts, f = 4, 128
    (kernel,) = row_gemm.kernels(experts, k, f, "llvm")
    lib = tvm.tirx.build(tvm.IRModule({"main": kernel}), HOST, pipeline=tir_pipeline(HOST))
    assert ("llvm.x86.sse2.mfence" in lib.inspect_source("ll")) == balanced
    rng = np.random.default_rng(0)
    w = rng.standard_normal((experts, k, f), dtype=np.float32)
    for n in (1, 7, 40):
        x = rng.standard_normal((n, k), dtype=np.float32)
        expert = rng.integers(0, experts, n)
        y = tvm.runtime.tensor(np.full((n, f), np.nan, np.float32))
        lib["main"](*map(tvm.runtime.tensor, (x, w, expert)), y)
        want = np.einsum("nk,nkf->nf", x, w[expert])
        np.testing.assert_allclose(y.numpy(), want, rtol=1e-4, atol=1e-4)


def test_pipeline_only_for_x86_cpus_with_an_even_core_count() -> None:
    assert tir_pipeline(tvm.target.Target({"kind": "cuda", "arch": "sm_80"})) == "default"
    x86 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "skylake-avx512"}
    assert tir_pipeline(tvm.target.Target({**x86, "num-cores": 3})) == "default"
    assert tir_pipeline(tvm.target.Target({**x86, "num-cores": 1})) == "default"
    assert tir_pipeline(tvm.target.Target({**x86, "num-cores": 4})) != "default"
    arm = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "num-cores": 4}
    assert tir_pipeline(tvm.target.Target(arm)) == "default"
