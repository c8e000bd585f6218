"""async_attention (asynchronous softmax with a unified max): kernels against torch, including
rows that force the standard-softmax fallback, for a static and a symbolic batch; the pass on a
tiny Llama's steps; CUDA to PTX."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import sympy

torch = pytest.importorskip("torch")

from ember.api import compile_graph  # noqa: E402
from ember.codegen.async_softmax import HIGH, LOW  # noqa: E402
from ember.ir import Builder, interpret  # noqa: E402
from ember.ir.ops import AsyncAttention  # noqa: E402
from ember.ir.serialize import from_json, to_json  # noqa: E402
from ember.passes.async_softmax import async_softmax, attention_sites, calibrate_phi  # noqa: E402

B, H, KVH, N, D = 2, 4, 2, 2, 32
LENGTHS = (37, 2)
SCALE = 0.17


def _graph(phi: float, lengths: tuple[int, ...], bias_heads: int, batch: object = B) -> object:
    b = Builder("attention")
    q = b.input((batch, H, N, D), "float32", "q")
    bias = b.input((batch, bias_heads, N, sum(lengths)), "float32", "bias")
    keys = [b.input((batch, KVH, t, D), "float32", f"k{i}") for i, t in enumerate(lengths)]
    values = [b.input((batch, KVH, t, D), "float32", f"v{i}") for i, t in enumerate(lengths)]
    op = AsyncAttention(scale=SCALE, phi=phi, chunk=16, parts=len(lengths))
    b.output(b.emit(op, q, bias, *keys, *values))
    return b.build()


def _attention(phi: float, lengths: tuple[int, ...], bias_heads: int) -> object:
    return compile_graph(_graph(phi, lengths, bias_heads), "llvm", (), cache=False)


def _torch(q, bias, keys, values):
    k = torch.cat([torch.from_numpy(x) for x in keys], 2).double().repeat_interleave(H // KVH, 1)
    v = torch.cat([torch.from_numpy(x) for x in values], 2).double().repeat_interleave(H // KVH, 1)
    scores = torch.from_numpy(q).double() @ k.transpose(2, 3) * SCALE + torch.from_numpy(bias)
    return (torch.softmax(scores, -1) @ v).float().numpy()


@pytest.mark.parametrize(("lengths", "bias_heads"), [(LENGTHS, 1), ((40,), H)])
def test_kernels_match_torch_with_and_without_fallback(lengths, bias_heads):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((B, H, N, D)).astype(np.float32)
    keys = [rng.standard_normal((B, KVH, t, D)).astype(np.float32) for t in lengths]
    values = [rng.standard_normal((B, KVH, t, D)).astype(np.float32) for t in lengths]
    masked = rng.random((B, bias_heads, N, sum(lengths))) < 0.3
    masked[..., -1] = False  # every row sees a position
    bias = np.where(masked, np.finfo(np.float32).min, 0).astype(np.float32)
    loud = q.copy()
    loud[0, 1, 0] *= 400  # this row's x - phi exceeds HIGH: only it falls back
    program = _attention(0.0, lengths, bias_heads)
    for query, note in ((q, "in range"), (loud, "one row above HIGH")):
        got = np.asarray(program.run([query, bias, *keys, *values])[0].numpy())
        np.testing.assert_allclose(got, _torch(query, bias, keys, values), atol=2e-5, err_msg=note)
    assert np.abs(loud[0, 1, 0] @ keys[0][0, 0].T * SCALE).max() > HIGH
    low = _attention(-LOW + 50, lengths, bias_heads)  # every row below LOW: all fall back
    got = np.asarray(low.run([q, bias, *keys, *values])[0].numpy())
    np.testing.assert_allclose(got, _torch(q, bias, keys, values), atol=2e-5)


def test_symbolic_batch_one_build_serves_every_batch():
    graph = _graph(0.0, LENGTHS, 1, batch=sympy.Symbol("batch"))
    program = compile_graph(graph, "llvm", (), cache=False)
    rng = np.random.default_rng(1)
    for batch in (1, 3):
        q = rng.standard_normal((batch, H, N, D)).astype(np.float32)
        q[-1, 1, 0] *= 400  # the last batch row's head 1 falls back
        keys = [rng.standard_normal((batch, KVH, t, D)).astype(np.float32) for t in LENGTHS]
        values = [rng.standard_normal((batch, KVH, t, D)).astype(np.float32) for t in LENGTHS]
        bias = np.zeros((batch, 1, N, sum(LENGTHS)), np.float32)
        got = np.asarray(program.run([q, bias, *keys, *values])[0].numpy())
        want = _torch(q, bias, keys, values)
        np.testing.assert_allclose(got, want, atol=2e-5, err_msg=f"batch {batch}")


def _llama_step(past: bool):
    pytest.importorskip("transformers")
    from ember.frontend.torch import import_module
    from ember.llm.build import _example
    from ember.llm.decoder import DecoderStep
    from ember.passes import run_pipeline
    from examples.zoo import build

    model = build("llama")[0].eval()
    attn = model.model.layers[0].self_attn
    step = DecoderStep(model, past=past)
    example = _example(step, 2, 1 if past else 8, 16, 2, attn.head_dim)
    graph, _ = run_pipeline(import_module(step, example).graph, None)
    rng = np.random.default_rng(1)
    inputs = [np.asarray(t) for t in example]
    inputs[0] = rng.integers(0, 500, inputs[0].shape)
    inputs[3:] = [rng.standard_normal(a.shape).astype(np.float32) for a in inputs[3:]]
    return graph, inputs, len(model.model.layers)


@pytest.mark.parametrize("past", [True, False])
def test_pass_rewrites_every_layer_of_a_llama_step(past):
    graph, inputs, layers = _llama_step(past)
    assert len(attention_sites(graph)) == layers
    phi = calibrate_phi(graph, [inputs])
    rewritten = async_softmax(graph, phi=phi, chunk=8)
    ops = [n.op for n in rewritten.nodes]
    assert sum(isinstance(op, AsyncAttention) for op in ops) == layers
    assert [op.phi for op in ops if isinstance(op, AsyncAttention)] == list(phi)
    assert not any(op.name == "softmax" for op in ops)
    assert [n.op for n in from_json(to_json(rewritten)).nodes] == ops
    assert all(op.parts == (2 if past else 1) for op in ops if isinstance(op, AsyncAttention))
    for want, got in zip(interpret(graph, *inputs), interpret(rewritten, *inputs), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_cuda_build_compiles_to_ptx(tmp_path):
    from ember.codegen.build import build
    from ember.codegen.gpu import emit_source

    target = {"kind": "cuda", "arch": "sm_80"}
    for batch in (B, sympy.Symbol("batch")):
        graph = _graph(0.5, LENGTHS, 1, batch=batch)
        paths = emit_source(build(graph, target), target, tmp_path / str(batch))
        entries = set(re.findall(r"\.entry (\w+)\(", paths[1].read_text()))
        assert {"async_softmax_0_kernel", "async_softmax_1_kernel"} <= entries  # partial, combine
