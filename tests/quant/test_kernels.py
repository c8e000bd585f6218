"""Quantized ops built for this CPU against their numpy references; VNNI in the assembly."""

from __future__ import annotations

import numpy as np
import pytest

from ember.codegen.build import build
from ember.ir import Builder, interpret, sym
from ember.ir.ops import Int4GroupMatMul, Int4MatMul, Int8MatMul, QuantizeRows
from ember.ir.ops.quant_pack import (
    pack_int4_panels,
    pack_vnni_int4,
    pack_vnni_int8,
    quantize_rows,
    quantize_symmetric,
    unpack_int4_panels,
    unpack_vnni_int4,
    unpack_vnni_int8,
)
from ember.runtime import Executor

CPU = {"kind": "llvm", "mcpu": "sapphirerapids", "num-cores": 2}
K, N = 256, 64


def _asm(executable) -> str:
    def walk(m):
        yield m
        for child in m.imports:
            yield from walk(child)

    return "".join(m.inspect_source("asm") for m in walk(executable.mod) if m.kind == "llvm")


def _run(g, *inputs):
    result = build(g, CPU)
    return Executor(result.executable, target=result.target).run(list(inputs)), result


def test_packings_round_trip(rng):
    w8 = rng.integers(-127, 128, (K, N)).astype(np.int8)
    assert np.array_equal(unpack_vnni_int8(pack_vnni_int8(w8)), w8)
    w4 = rng.integers(-8, 8, (K, N)).astype(np.int8)
    assert np.array_equal(unpack_vnni_int4(pack_vnni_int4(w4)), w4)
    u4 = rng.integers(0, 16, (K, N)).astype(np.uint8)
    packed = pack_int4_panels(u4)
    assert packed.nbytes == K * N // 2
    assert np.array_equal(unpack_int4_panels(packed), u4)


def _w8a8_graph(rng, rows):
    w = rng.standard_normal((K, N)).astype(np.float32)
    q, scale = quantize_symmetric(w, 8, axis=0)
    comp = 128 * q.astype(np.int32).sum(axis=0, dtype=np.int32)
    b = Builder()
    x = b.input((rows, K), "float32", "x")
    xq, xs = b.emit_multi(QuantizeRows(bits=8), x)
    consts = (pack_vnni_int8(q), scale[0], comp)
    b.output(b.emit(Int8MatMul(), xq, xs, *(b.const(c) for c in consts)))
    return b.build({"m": (1, 1024)} if not isinstance(rows, int) else None), w


@pytest.mark.parametrize("rows", [1, 37, sym("m")])
def test_int8_matmul_is_exact_and_uses_vnni(rng, rows):
    g, w = _w8a8_graph(rng, rows)
    result = build(g, CPU)
    assert "vpdpbusd" in _asm(result.executable)
    executor = Executor(result.executable, target=result.target)
    for m in (1, 13, 40) if not isinstance(rows, int) else (rows,):
        x = rng.standard_normal((m, K)).astype(np.float32)
        (out,) = executor.run([x])
        np.testing.assert_array_equal(out.numpy(), interpret(g, x)[0])  # integer math: exact
        err = np.linalg.norm(out.numpy() - x @ w) / np.linalg.norm(x @ w)
        assert err < 0.02


def test_quantize_rows_matches_reference(rng):
    b = Builder()
    x = b.input((5, K), "float32", "x")
    b.output(*b.emit_multi(QuantizeRows(bits=4, group_size=64), x))
    g = b.build()
    xv = rng.standard_normal((5, K)).astype(np.float32)
    (q, s), _ = _run(g, xv)
    ref_q, ref_s = quantize_rows(xv, 4, 64)
    np.testing.assert_array_equal(q.numpy(), ref_q)
    np.testing.assert_array_equal(s.numpy(), ref_s)
    assert q.numpy().min() >= 1
    assert q.numpy().max() <= 15


@pytest.mark.parametrize("rows", [1, 13, 24, 517])
def test_int4_matmul_dequantizes_in_kernel(rng, rows):
    q = rng.integers(0, 16, (K, N)).astype(np.uint8)
    s = rng.random((K // 64, N)).astype(np.float32)
    o = rng.random((K // 64, N)).astype(np.float32)
    b = Builder()
    x = b.input((rows, K), "float32", "x")
    p = b.const(pack_int4_panels(q))
    b.output(b.emit(Int4MatMul(group_size=64), x, p, b.const(s), b.const(o)))
    g = b.build()
    xv = rng.standard_normal((rows, K)).astype(np.float32)
    (out,), _ = _run(g, xv)
    np.testing.assert_allclose(out.numpy(), interpret(g, xv)[0], rtol=1e-4, atol=1e-3)


def test_int4_group_matmul_is_exact_and_uses_vnni(rng):
    w = rng.integers(-7, 8, (K, N)).astype(np.int8)
    ws = rng.random((K // 64, N)).astype(np.float32)
    comp = 8 * w.reshape(K // 64, 64, N).astype(np.int32).sum(axis=1, dtype=np.int32)
    b = Builder()
    x = b.input((19, K), "float32", "x")
    xq, xs = b.emit_multi(QuantizeRows(bits=4, group_size=64), x)
    consts = (pack_vnni_int4(w), ws, comp)
    b.output(b.emit(Int4GroupMatMul(group_size=64), xq, xs, *(b.const(c) for c in consts)))
    g = b.build()
    result = build(g, CPU)
    assert "vpdpbusd" in _asm(result.executable)
    xv = rng.standard_normal((19, K)).astype(np.float32)
    (out,) = Executor(result.executable, target=result.target).run([xv])
    np.testing.assert_allclose(out.numpy(), interpret(g, xv)[0], rtol=1e-5, atol=1e-4)


def test_bad_weight_layout_names_the_op():
    b = Builder()
    q = b.input((4, K), "uint8")
    xs = b.input((4, 1), "float32")
    bad = b.input((N, K), "int8")
    ws = b.input((N,), "float32")
    comp = b.input((N,), "int32")
    with pytest.raises(Exception, match=r"int8_matmul: expects b i8\[N/16, K/4, 16, 4\]"):
        b.emit(Int8MatMul(), q, xs, bad, ws, comp)
