"""`int4_panel_group_matmul` (QSPEC's W4A4 draft kernel) reads `int4_matmul`'s weight arrays:
built for this CPU against its numpy reference, VNNI in the assembly, and equal to the W4A16
matmul of the dequantized activations."""

from __future__ import annotations

import numpy as np
import pytest

from ember.codegen.build import build
from ember.ir import Builder, interpret
from ember.ir.ops import Int4MatMul, Int4PanelGroupMatMul, QuantizeRows
from ember.ir.ops.quant_pack import dequantize_rows, pack_int4_panels, quantize_rows
from ember.ir.ops.quant_shared import panel_levels
from ember.passes.quantize_w4a16 import quantize_groups
from ember.runtime import Executor

CPU = {"kind": "llvm", "mcpu": "sapphirerapids", "num-cores": 2}
K, N, G = 256, 64, 64


def _weights(rng):
    w = rng.standard_normal((K, N)).astype(np.float32)
    q, s, o = quantize_groups(w, G)
    p = pack_int4_panels(q)
    comp = 8 * panel_levels(p, s, o, G).astype(np.int32).reshape(K // G, G, N).sum(axis=1)
    return p, s, o, comp.astype(np.int32)


@pytest.mark.parametrize("rows", [1, 5, 19])
def test_draft_kernel_matches_reference_and_w4a16(rng, rows):
    p, s, o, comp = _weights(rng)
    x = rng.standard_normal((rows, K)).astype(np.float32)
    b = Builder()
    xv = b.input((rows, K), "float32", "x")
    weights = [
        b.input(a.shape, a.dtype, name) for a, name in zip((p, s, o, comp), "psoc", strict=True)
    ]
    xq, xs = b.emit_multi(QuantizeRows(bits=4, group_size=G), xv)
    b.output(b.emit(Int4PanelGroupMatMul(group_size=G), xq, xs, *weights))
    g = b.build()
    result = build(g, CPU)
    got = Executor(result.executable, target=result.target).run([x, p, s, o, comp])[0].numpy()
    expected = interpret(g, x, p, s, o, comp)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    # the same as W4A16 on the activations' 4-bit values: one weight set, two kernels
    x4 = dequantize_rows(*quantize_rows(x, 4, G), 4)
    w4a16 = Int4MatMul(group_size=G).reference(x4, p, s, o)
    np.testing.assert_allclose(got, w4a16, rtol=1e-4, atol=1e-3)
    if rows > 1:
        asm = "".join(
            m.inspect_source("asm")
            for m in [result.executable.mod, *result.executable.mod.imports]
            if m.kind == "llvm"
        )
        assert "vpdpbusd" in asm
