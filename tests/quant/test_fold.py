"""Folding AWQ's 1 / s and Atom's reordering into the producing ops' constants
(`column_edits` in passes/_match.py): exact on the graphs where it applies, refused where it does not, and
what the passes then emit (no run-time multiply or gather) on tiny Llama-like blocks."""

from __future__ import annotations

import numpy as np
import pytest

from ember.ir import Builder, interpret, verify
from ember.ir.ops import BINARY_OPS, UNARY_OPS, MatMul, ReduceMean, Transpose
from ember.passes._match import ColumnTransform, column_edits
from ember.passes.quantize_w4a4 import quantize_w4a4
from ember.passes.quantize_w4a16 import quantize_w4a16

D, F = 128, 256  # hidden and MLP widths
mul, add = BINARY_OPS["mul"], BINARY_OPS["add"]


def _linear(b: Builder, x, w: np.ndarray):
    return b.emit(MatMul(), x, b.emit(Transpose((1, 0)), b.const(w)))


def _rms_norm(b: Builder, x, gamma: np.ndarray):
    mean = b.emit(ReduceMean(axes=(-1,), keepdims=True), b.emit(mul(), x, x))
    normalized = b.emit(mul(), x, b.emit(UNARY_OPS["rsqrt"](), mean))
    return b.emit(mul(), normalized, b.const(gamma))


def _block(rng, outlier_channels: bool = True):
    """RMSNorm => q, k, v (three linears sharing one input) and a SiLU-gated MLP:
    out = (q + k + v) + down(silu(gate(h)) * up(h)), h = RMSNorm(x)."""
    gamma = (1 + rng.random(D)).astype(np.float32)
    if outlier_channels:
        gamma[rng.choice(D, 6, replace=False)] *= 30  # a few channels carry outliers, as in LLMs
    weights = [rng.standard_normal(s).astype(np.float32) / 8 for s in [(D, D)] * 3]
    gate, up = (rng.standard_normal((F, D)).astype(np.float32) / 8 for _ in range(2))
    down = rng.standard_normal((D, F)).astype(np.float32) / 16
    b = Builder()
    x = b.input((2, 16, D), "float32", "x")
    h = _rms_norm(b, x, gamma)
    qkv = [_linear(b, h, w) for w in weights]
    attention = b.emit(add(), b.emit(add(), qkv[0], qkv[1]), qkv[2])
    gated = b.emit(mul(), b.emit(UNARY_OPS["silu"](), _linear(b, h, gate)), _linear(b, h, up))
    b.output(b.emit(add(), attention, _linear(b, gated, down)))
    return b.build()


def _calibrate(g, x):
    """Each matmul's input rows, keyed by its weight Value (what quantize.calibrate returns)."""
    sites = [n for n in g.nodes if isinstance(n.op, MatMul)]
    b = Builder.like(g)
    for node in g.nodes:
        b.add_node(node)
    b.output(*(n.inputs[0] for n in sites))
    rows = interpret(b.build(), x)
    return {n.inputs[1]: r.reshape(-1, r.shape[-1]) for n, r in zip(sites, rows, strict=True)}


def _error(g, quantized, x):
    exact = interpret(g, x)[0]
    return np.linalg.norm(interpret(quantized, x)[0] - exact) / np.linalg.norm(exact)


def _site_input(g, weight_rows: int, index: int = 0):
    """The activation read by the index-th linear whose weight has `weight_rows` rows."""
    nodes = [n for n in g.nodes if isinstance(n.op, MatMul) and n.inputs[1].type.shape[1] == D]
    matches = [n for n in nodes if n.inputs[1].type.shape[0] == weight_rows] or nodes
    return matches[index].inputs[0]


def _gated(g):
    return next(n.inputs[0] for n in g.nodes if isinstance(n.op, MatMul) and
                n.inputs[0].type.shape[-1] == F)  # fmt: skip


def _transformed(g, x_value, transform, x):
    """Run g with its constants edited; return (the value it now computes, the original)."""
    edits = column_edits(g, x_value, transform)
    assert edits is not None
    b = Builder.like(g)
    b.consts.update(edits)
    for node in g.nodes:
        b.add_node(node)
    b.output(x_value)
    original = Builder.like(g)
    for node in g.nodes:
        original.add_node(node)
    original.output(x_value)
    return interpret(b.build(), x)[0], interpret(original.build(), x)[0], edits


@pytest.mark.parametrize("kind", ["scale", "perm", "both"])
def test_gated_mlp_input_absorbs_scale_and_permutation(rng, kind):
    g = _block(rng)
    x = rng.standard_normal((2, 16, D)).astype(np.float32)
    perm = rng.permutation(F) if kind != "scale" else None
    scale = (0.5 + rng.random(F)).astype(np.float32) if kind != "perm" else None
    after, before, edits = _transformed(g, _gated(g), ColumnTransform(perm, scale), x)
    expected = before if perm is None else before[..., perm]
    expected = expected if scale is None else expected * scale
    np.testing.assert_allclose(after, expected, rtol=1e-4, atol=1e-5)
    # scaling stops at up's weight; a permutation must reach gate's too (through SiLU)
    assert len(edits) == (1 if kind == "scale" else 2)


def test_rms_norm_gamma_absorbs_a_scale_not_a_permutation(rng):
    g = _block(rng)
    x = rng.standard_normal((2, 16, D)).astype(np.float32)
    h = _site_input(g, D)
    scale = (0.5 + rng.random(D)).astype(np.float32)
    after, before, edits = _transformed(g, h, ColumnTransform(scale=scale), x)
    np.testing.assert_allclose(after, before * scale, rtol=1e-5)
    assert next(iter(edits.values())).shape == (D,)  # gamma
    # the normalized input (the residual stream, a graph input here) cannot be permuted
    assert column_edits(g, h, ColumnTransform(perm=rng.permutation(D))) is None


def test_value_with_other_users_is_not_folded(rng):
    b = Builder()
    x = b.input((4, D), "float32", "x")
    y = _linear(b, x, rng.standard_normal((D, D)).astype(np.float32))
    b.output(_linear(b, y, rng.standard_normal((D, D)).astype(np.float32)), y)  # y is an output
    g = b.build()
    assert column_edits(g, y, ColumnTransform(scale=np.ones(D, np.float32))) is None


def test_awq_scales_are_folded_upstream(rng):
    g = _block(rng)
    x = rng.standard_normal((2, 16, D)).astype(np.float32)
    calibration = _calibrate(g, x)
    awq = quantize_w4a16(g, method="awq", activations=calibration)
    verify(awq)
    ops = awq.op_histogram()
    assert ops["int4_matmul"] == 6
    assert ops["mul"] == g.op_histogram()["mul"]  # no run-time 1 / s: all three folded
    rtn = quantize_w4a16(g, method="rtn")
    assert _error(g, awq, x) < _error(g, rtn, x) < 0.2


def test_atom_order_is_folded_into_the_gated_mlp(rng):
    g = _block(rng)
    x = rng.standard_normal((2, 16, D)).astype(np.float32)
    calibration = _calibrate(g, x)
    atom = quantize_w4a4(g, group_size=64, outliers=32, activations=calibration)
    verify(atom)
    ops = atom.op_histogram()
    assert ops["int4_group_matmul"] == ops["int8_matmul"] == 6
    # the norm's output is reordered at run time once for its five linears (two gathers, two
    # quantizations), down's input arrives reordered (slices of the gate/up columns)
    assert ops["gather"] == 2
    assert ops["quantize_rows"] == 4
    assert ops["slice"] == 2
    rtn = quantize_w4a4(g, group_size=64, method="rtn")
    assert _error(g, atom, x) < 0.7 * _error(g, rtn, x)
