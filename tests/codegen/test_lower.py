"""Lowering to Relax: symbolic dims become TIR vars shared across ops; one build serves many sizes."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

from ember.codegen.build import build
from ember.codegen.lower import _to_tir
from ember.codegen.target import host_cpu, resolve_target
from ember.errors import CodegenError
from ember.ir import Builder, interpret, sym
from ember.ir.ops import Concat, Gather, MatMul, Reshape, Slice, Softmax
from ember.runtime import Executor
from tests.helpers import assert_close


def test_symbolic_expressions_lower_to_tir():
    seq, batch = sym("seq"), sym("batch")
    symbols: dict = {}
    expr = _to_tir(sympy.ceiling((2 * seq + batch) / 3) + sympy.Max(seq, 4), symbols)
    assert set(s.name for s in symbols) == {"seq", "batch"}
    text = str(expr)
    assert "seq" in text
    assert "batch" in text
    assert "max" in text.lower()


def test_one_build_runs_many_sequence_lengths(rng):
    b = Builder()
    seq = sym("seq")
    x = b.input((2, seq, 8), "float32", name="x")
    w = b.const(rng.standard_normal((8, 6)).astype(np.float32))
    y = b.emit(Softmax(-1), b.emit(MatMul(), x, w))
    doubled = b.emit(Concat(1), y, y)  # 2*seq rows
    b.output(b.emit(Reshape((2, -1)), doubled), b.emit(Slice((1,), (1,), (seq,), (1,)), y))
    g = b.build()
    run = Executor(build(g, "llvm").executable).run
    for length in (1, 5, 33):
        arr = rng.standard_normal((2, length, 8)).astype(np.float32)
        for got, want in zip(run([arr]), interpret(g, arr), strict=True):
            assert_close(got.numpy(), want)


def test_scalar_constants_keep_rank_zero(rng):
    """x[:, -1]: a 0-d index constant must stay 0-d (np.ascontiguousarray made it [1])."""
    b = Builder()
    x = b.input((2, 5, 8), "float32", name="x")
    last = b.emit(Gather(1), x, b.const(np.array(-1, np.int64)))
    b.output(last, b.const(np.array(3.0, np.float32)))
    g = b.build()
    arr = rng.standard_normal((2, 5, 8)).astype(np.float32)
    got = Executor(build(g, "llvm").executable).run([arr])
    assert got[0].numpy().shape == (2, 8)
    assert got[1].numpy().shape == ()
    assert_close(got[0].numpy(), arr[:, -1])


def test_host_target_names_the_cpu():
    cpu = host_cpu()
    assert cpu["kind"] == "llvm"
    assert cpu["num-cores"] >= 1
    assert resolve_target("llvm")["mcpu"] == cpu["mcpu"]
    assert resolve_target('{"kind": "cuda", "arch": "sm_90"}') == {"kind": "cuda", "arch": "sm_90"}


def test_bad_targets_are_clear_errors():
    with pytest.raises(CodegenError, match="unknown target 'tpu'; use 'llvm'"):
        resolve_target("tpu")
    with pytest.raises(CodegenError, match="is not valid JSON"):
        resolve_target("{kind: cuda")


def test_computed_input_dims_are_rejected():
    b = Builder()
    seq = sym("seq")
    b.output(b.input((2 * seq,), "float32", name="x"))
    with pytest.raises(CodegenError, match="input 'x' has a computed dim 2\\*seq"):
        build(b.build(), "llvm")
