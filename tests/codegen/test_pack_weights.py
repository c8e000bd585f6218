"""Packed weights: matmul(x, const w) becomes packed_matmul over w packed once at compile time,
the CPU Matmul schedule reads the panels in place, and results match the reference (symbolic
and odd M, fused epilogues); GPU builds keep the plain matmul."""

from __future__ import annotations

import numpy as np
import pytest
import tvm

from ember.codegen import build as build_module
from ember.codegen.build import build, fuse
from ember.codegen.cpu_matmul import Matmul
from ember.codegen.lower import to_relax
from ember.codegen.pack_weights import pack_matmul_weights
from ember.codegen.target import host_cpu
from ember.ir import Builder, Graph, interpret, sym, verify
from ember.ir.ops import (
    Add,
    Gelu,
    MatMul,
    PackedMatMul,
    Transpose,
    pack_panels,
    unpack_panels,
)
from ember.runtime import Executor
from tests.helpers import assert_close

PANEL = 32


def _linear(rng: np.random.Generator, rows: object, k: int, n: int, *, transposed: bool = False,
            epilogue: bool = False) -> Graph:  # fmt: skip
    b = Builder()
    x = b.input((2, rows, k), "float32", "x")
    shape = (n, k) if transposed else (k, n)
    w = b.const((rng.standard_normal(shape) / np.sqrt(k)).astype(np.float32))
    y = b.emit(MatMul(), x, b.emit(Transpose((1, 0)), w) if transposed else w)
    if epilogue:
        y = b.emit(Gelu(), b.emit(Add(), y, b.const(rng.standard_normal(n).astype(np.float32))))
    b.output(y)
    return b.build()


def _ops(g: Graph) -> list[type]:
    return [type(node.op) for node in g.nodes]


def test_pack_and_unpack_round_trip(rng):
    w = rng.standard_normal((5, 70)).astype(np.float32)
    packed = pack_panels(w, PANEL)
    assert packed.shape == (3, 5, PANEL)
    assert packed[2, 4, 5] == w[4, 69]
    assert not packed[2, :, 6:].any()  # zero-padded
    np.testing.assert_array_equal(unpack_panels(packed, 70), w)


@pytest.mark.parametrize("transposed", [False, True])
def test_constant_weights_are_packed(rng, transposed):
    g = _linear(rng, 8, 16, 64, transposed=transposed)
    packed = pack_matmul_weights(g, panel=PANEL)
    verify(packed)
    assert _ops(packed) == [PackedMatMul]
    (array,) = packed.consts.values()
    assert array.shape == (2, 16, PANEL)
    x = rng.standard_normal((2, 8, 16)).astype(np.float32)
    assert_close(interpret(packed, x)[0], interpret(g, x)[0])


def test_shared_weight_is_packed_once(rng):
    b = Builder()
    w = b.const(rng.standard_normal((16, 32)).astype(np.float32))
    b.output(*(b.emit(MatMul(), b.input((4, 16), "float32", name), w) for name in "xy"))
    packed = pack_matmul_weights(b.build(), panel=PANEL)
    assert _ops(packed) == [PackedMatMul, PackedMatMul]
    assert len(packed.consts) == 1


def test_symbolic_rows_get_the_wide_panel_when_it_divides_n(rng):
    wide = {n: _linear(rng, sym("seq"), 16, n) for n in (128, 96)}
    widths = {n: pack_matmul_weights(g, panel=PANEL, wide_panel=2 * PANEL) for n, g in wide.items()}
    assert {n: next(iter(g.consts.values())).shape[2] for n, g in widths.items()} == {
        128: 2 * PANEL,
        96: PANEL,  # 96 is not a whole number of wide panels
    }
    static = pack_matmul_weights(_linear(rng, 8, 16, 128), panel=PANEL, wide_panel=2 * PANEL)
    assert next(iter(static.consts.values())).shape[2] == PANEL


@pytest.mark.parametrize("rows", [1, 6, 7, 50])
def test_symbolic_rows_on_the_wide_tile(rng, rows):
    g = _linear(rng, sym("seq"), 40, 128, epilogue=True)
    _check(g, rng.standard_normal((2, rows, 40)).astype(np.float32))


def test_runtime_ragged_and_non_float32_weights_are_kept(rng):
    b = Builder()
    x = b.input((4, 16), "float32", "x")
    b.output(b.emit(MatMul(), x, b.input((16, 64), "float32", "w")))  # not a constant
    b.output(b.emit(MatMul(), x, b.const(rng.standard_normal((16, 40)).astype(np.float32))))
    i = b.input((4, 16), "int32", "i")
    b.output(b.emit(MatMul(), i, b.const(np.ones((16, 64), np.int32))))
    g = b.build()
    assert _ops(pack_matmul_weights(g, panel=PANEL)) == _ops(g)


def _check(g: Graph, x: np.ndarray) -> None:
    got = Executor(build(g, "llvm").executable).run([x])[0].numpy()
    assert_close(got, interpret(g, x)[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rows", [1, 5, 37])
def test_symbolic_rows_with_fused_epilogue(rng, rows):
    g = _linear(rng, sym("seq"), 48, 96, transposed=True, epilogue=True)
    _check(g, rng.standard_normal((2, rows, 48)).astype(np.float32))


@pytest.mark.parametrize(("rows", "k", "n"), [(1, 256, 320), (13, 33, 64), (512, 512, 64)])
def test_static_shapes(rng, rows, k, n):
    _check(_linear(rng, rows, k, n), rng.standard_normal((2, rows, k)).astype(np.float32))


def test_matmul_reads_the_panels_in_place(rng):
    g = pack_matmul_weights(_linear(rng, 64, 48, 96, epilogue=True), panel=PANEL)
    target = tvm.target.Target(host_cpu())
    with target:
        (func,) = [
            f for _, f in fuse(to_relax(g)).functions_items() if isinstance(f, tvm.tirx.PrimFunc)
        ]
    sch = Matmul().apply(func, target, False)
    assert sch is not None
    blocks = {sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))}
    assert blocks == {"matmul_init", "matmul_update", "matmul_intermediate_reindex_local"}


def test_gpu_builds_keep_plain_matmul(rng, monkeypatch):
    calls = []
    monkeypatch.setattr(build_module, "pack_matmul_weights", lambda g, **_: calls.append(g))
    build(_linear(rng, 8, 16, 64), {"kind": "cuda", "arch": "sm_90"})
    assert calls == []
