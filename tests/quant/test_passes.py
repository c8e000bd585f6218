"""The quantization passes on tiny graphs: structure, when they must not fire, and accuracy
(calibrated methods beat round-to-nearest on activations with outlier channels)."""

from __future__ import annotations

import numpy as np
import pytest

from ember.ir import Builder, interpret, verify
from ember.ir.ops import MatMul, Transpose
from ember.passes.quantize_w4a4 import quantize_w4a4
from ember.passes.quantize_w4a16 import quantize_w4a16
from ember.passes.quantize_w8a8 import quantize_w8a8

K, N = 256, 64


def _linear(w: np.ndarray, rows: int = 8):
    """y = x @ w.T, as PyTorch's Linear imports."""
    b = Builder()
    x = b.input((2, rows, w.shape[1]), "float32", "x")
    b.output(b.emit(MatMul(), x, b.emit(Transpose((1, 0)), b.const(w))))
    return b.build()


def _outlier_data(rng, rows=64):
    x = rng.standard_normal((2, rows, K)).astype(np.float32)
    x[..., rng.choice(K, 8, replace=False)] *= 40  # a few channels carry outliers, as in LLMs
    w = rng.standard_normal((N, K)).astype(np.float32) / 16
    return x, w


def _error(g, quantized, x):
    exact = interpret(g, x)[0]
    return np.linalg.norm(interpret(quantized, x)[0] - exact) / np.linalg.norm(exact)


def _calibration(g, x):
    return {g.nodes[-1].inputs[1]: x.reshape(-1, K)}


def test_w8a8_structure():
    g = _linear(np.ones((N, K), np.float32))
    after = quantize_w8a8(g)
    verify(after)
    assert [n.op.name for n in after.nodes] == [
        "reshape",
        "quantize_rows",
        "int8_matmul",
        "reshape",
    ]


@pytest.mark.parametrize("pass_", [quantize_w8a8, quantize_w4a16, quantize_w4a4])
def test_ragged_weights_stay_float(pass_):
    g = _linear(np.ones((N + 3, K), np.float32))  # N not a multiple of 16
    assert [n.op.name for n in pass_(g).nodes] == ["transpose", "matmul"]


def test_smoothquant_beats_rtn_on_outliers(rng):
    x, w = _outlier_data(rng)
    g = _linear(w, rows=64)
    rtn = _error(g, quantize_w8a8(g, alpha=0.0), x)
    smooth = _error(g, quantize_w8a8(g, alpha=0.5, activations=_calibration(g, x)), x)
    assert smooth < 0.05
    assert smooth < 0.7 * rtn


def test_awq_beats_rtn(rng):
    x, w = _outlier_data(rng)
    g = _linear(w, rows=64)
    rtn = _error(g, quantize_w4a16(g, method="rtn"), x)
    awq = _error(g, quantize_w4a16(g, method="awq", activations=_calibration(g, x)), x)
    assert awq < rtn
    assert rtn < 0.2


def test_atom_beats_rtn(rng):
    x, w = _outlier_data(rng)
    g = _linear(w, rows=64)
    rtn_graph = quantize_w4a4(g, group_size=64, method="rtn")
    atom_graph = quantize_w4a4(g, group_size=64, outliers=64, activations=_calibration(g, x))
    verify(atom_graph)
    ops = [n.op.name for n in atom_graph.nodes]
    assert ops.count("gather") == 2
    assert "int4_group_matmul" in ops
    assert "int8_matmul" in ops
    assert _error(g, atom_graph, x) < 0.5 * _error(g, rtn_graph, x)


def test_atom_pads_a_partial_last_group(rng):
    """K - outliers = 192 channels: one whole group of 128 and one padded with zeros."""
    x, w = _outlier_data(rng)
    g = _linear(w, rows=64)
    atom_graph = quantize_w4a4(g, group_size=128, outliers=64, activations=_calibration(g, x))
    ops = [n.op.name for n in atom_graph.nodes]
    assert "pad" in ops
    assert "matmul" not in ops
    (int4,) = (n for n in atom_graph.nodes if n.op.name == "int4_group_matmul")
    assert int4.inputs[0].type.shape[1] == 256  # 192 reordered channels + 64 of padding
    rtn_graph = quantize_w4a4(g, group_size=128, method="rtn")
    assert _error(g, atom_graph, x) < 0.5 * _error(g, rtn_graph, x)


def test_atom_keeps_at_most_half_the_channels_in_int8(rng):
    x, w = _outlier_data(rng)
    w = w[:, :96]  # K = 96 < outliers: 48 int8 channels, 48 int4 padded to one group of 64
    g = _linear(w, rows=64)
    atom_graph = quantize_w4a4(
        g, group_size=64, activations={g.nodes[-1].inputs[1]: x[..., :96].reshape(-1, 96)}
    )
    shapes = {n.op.name: n.inputs[0].type.shape for n in atom_graph.nodes if "matmul" in n.op.name}
    assert shapes == {"int8_matmul": (128, 48), "int4_group_matmul": (128, 64)}
    assert _error(g, atom_graph, x[..., :96]) < 0.2
