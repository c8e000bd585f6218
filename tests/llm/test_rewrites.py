"""ember.llm with FlashDecoding++'s rewrites on a tiny Llama: the built steps really use
async_attention and flat_matmul, and greedy tokens stay identical to transformers' generate."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import ember.llm  # noqa: E402
from examples.zoo import build  # noqa: E402

# preset dispatch tables (no profiling in the test): decode (M = 2) runs gemv for the q/o
# projections and flat for the rest; prefill (M = 32) runs gemm or flat
DISPATCH = {
    (128, 128): ((2, "gemv"), (64, "flat")),
    (64, 128): ((8, "flat"), (64, "gemm")),
    (256, 128): ((2, "flat"), (64, "gemm")),
    (128, 256): ((4, "flat"), (64, "gemm")),
    (512, 128): ((64, "flat"),),
}


def _check(flat_gemm: bool, async_softmax: bool) -> Any:
    model, _ = build("llama")
    engine = ember.llm.compile(model, max_length=32, cache=False, flat_gemm=flat_gemm,
                               async_softmax=async_softmax)  # fmt: skip
    engine.options["dispatch"] = engine.options["dispatch_symbolic"] = dict(DISPATCH)
    generator = torch.Generator().manual_seed(5)
    ids = torch.randint(3, model.config.vocab_size, (2, 11), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    got = engine.generate(ids, mask, max_new_tokens=8)
    with torch.no_grad():
        want = model.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False)
    assert torch.equal(got, want), f"ember {got.tolist()}\ntransformers {want.tolist()}"
    return engine


def _ops(engine: Any, key: tuple[int, int]) -> list[Any]:
    return [node.op for node in engine.program(*key).graph.nodes]


@pytest.mark.slow
def test_both_rewrites_build_and_generate_like_transformers():
    engine = _check(flat_gemm=True, async_softmax=True)
    assert len(engine.options["phi"]) == engine.layers
    for key in ((2, 16), (2, 0)):  # prefill, decode
        names = [op.name for op in _ops(engine, key)]
        assert names.count("async_attention") == engine.layers
        assert "softmax" not in names
        assert "matmul" not in names
        assert names.count("flat_matmul") == 7 * engine.layers + 1
    decode = [op for op in _ops(engine, (2, 0)) if op.name == "flat_matmul"]
    assert {op.dispatch for op in decode} == set(DISPATCH.values())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flat_gemm", "async_softmax"), [(True, False), (False, True), (False, False)]
)
def test_each_rewrite_alone(flat_gemm: bool, async_softmax: bool):
    engine = _check(flat_gemm, async_softmax)
    names = [op.name for op in _ops(engine, (2, 0))]
    assert ("flat_matmul" in names) == flat_gemm
    assert ("async_attention" in names) == async_softmax
    assert ("softmax" in names) != async_softmax


@pytest.mark.slow
def test_one_decode_program_serves_every_batch():
    """The decode step is built once with a symbolic batch: its flat GEMMs dispatch by M and its
    attention kernels take any batch at run time; greedy tokens equal transformers' per batch."""
    model, _ = build("llama")
    engine = ember.llm.compile(model, max_length=32, cache=False)
    engine.options["dispatch"] = engine.options["dispatch_symbolic"] = dict(DISPATCH)
    generator = torch.Generator().manual_seed(7)
    for batch in (1, 3, 2):
        ids = torch.randint(3, model.config.vocab_size, (batch, 6 + batch), generator=generator)
        mask = torch.ones_like(ids)
        mask[-1, :2] = 0
        got = engine.generate(ids, mask, max_new_tokens=6)
        with torch.no_grad():
            want = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
        assert torch.equal(got, want), f"batch {batch}: {got.tolist()} != {want.tolist()}"
    assert [key for key in engine.programs if key[1] == 0] == [(None, 0)]
    decode = engine.programs[(None, 0)].graph
    assert not decode.inputs[0].type.is_static
    names = [node.op.name for node in decode.nodes]
    assert names.count("async_attention") == engine.layers
    assert names.count("flat_matmul") == 7 * engine.layers + 1
