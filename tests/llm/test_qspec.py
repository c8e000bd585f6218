"""QSPEC on a tiny Llama: W4A4 drafts and W4A16 verification over one packed 4-bit weight set;
greedy output token-identical to W4A16 autoregressive decoding over many prompts and batch
sizes; the draft kernel reads the verifier's buffers; quantized engines without speculation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import ember  # noqa: E402
import ember.llm  # noqa: E402
from ember.errors import UnsupportedError, UsageError  # noqa: E402
from examples.zoo import build  # noqa: E402

CONFIG = ember.QuantConfig("w4a16", group_size=32, outliers=32)


def _calibration(model: Any) -> list[tuple[Any]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randint(3, model.config.vocab_size, (1, 24), generator=generator),)]


@pytest.fixture(scope="module")
def qspec() -> tuple[Any, Any]:
    model, _ = build("llama")
    config = ember.QuantConfig("w4a16", group_size=32, outliers=32, calibration=_calibration(model))
    engine = ember.llm.compile(
        model, max_length=48, quantize=config, speculative="qspec", draft_len=3, cache=False
    )
    engine.adaptive = False  # one verification build (γ = 3)
    return model, engine


def _prompts(model: Any, batch: int, seed: int) -> tuple[Any, Any]:
    """`batch` prompts of 4..9 tokens, left-padded to 9."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, model.config.vocab_size, (batch, 9), generator=generator)
    mask = torch.ones_like(ids)
    for row in range(batch):
        pad = int(torch.randint(0, 6, (), generator=generator))
        ids[row, :pad] = model.config.pad_token_id
        mask[row, :pad] = 0
    return ids, mask


def test_qspec_equals_w4a16_autoregressive(qspec: tuple[Any, Any]):
    model, engine = qspec
    _check_identity(model, engine, 2, seeds=range(3), new_tokens=12)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3])
def test_qspec_equals_w4a16_other_batches(qspec: tuple[Any, Any], batch: int):
    model, engine = qspec
    _check_identity(model, engine, batch, seeds=range(3, 9), new_tokens=16)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [2, 4])
def test_qspec_equals_w4a16_many_prompts_adaptive(qspec: tuple[Any, Any], batch: int):
    model, engine = qspec
    engine.adaptive = True
    try:
        _check_identity(model, engine, batch, seeds=range(10, 22), new_tokens=24)
    finally:
        engine.adaptive = False


def _check_identity(model: Any, engine: Any, batch: int, seeds: Any, new_tokens: int) -> None:
    for seed in seeds:
        ids, mask = _prompts(model, batch, seed)
        reference = engine.generate(ids, mask, max_new_tokens=new_tokens, speculative=False)
        tokens = engine.generate(ids, mask, max_new_tokens=new_tokens)
        assert torch.equal(tokens, reference), (seed, tokens, reference)
        stats = engine.stats
        assert stats.drafted > 0
        assert 0 <= stats.accepted <= stats.drafted
        assert len(stats.row_acceptance) == batch
        assert tokens.shape[1] <= ids.shape[1] + new_tokens


def test_one_weight_set_shared_by_draft_and_verify(qspec: tuple[Any, Any]):
    model, engine = qspec
    ids, mask = _prompts(model, 2, 0)
    engine.generate(ids, mask, max_new_tokens=6)
    weights = engine.options["weights"]
    draft = engine.drafter(2)
    verify = engine.verifier(2, 3)
    linears = 7 * len(model.model.layers) + 1  # q, k, v, o, gate, up, down per layer; lm_head
    assert len(weights.linears) == linears
    assert len(verify.weights) == 3 * linears
    assert len(draft.weights) == 4 * linears
    # the same TVM buffers: the draft reads the verifier's nibbles, scales and offsets
    shared = {id(t) for t in verify.weights}
    assert shared <= {id(t) for t in draft.weights}
    assert engine.weight_bytes == sum(t.numpy().nbytes for t in verify.weights)
    fp32 = sum(m.weight.numel() * 4 for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert engine.weight_bytes < fp32 / 4
    # the lifted weights are no program's constants
    assert all(v.type.dtype.name != "uint8" for v in verify.program.graph.consts)


def test_adaptive_gamma_follows_acceptance(qspec: tuple[Any, Any]):
    _, engine = qspec
    engine.adaptive = True
    try:
        engine.cost_ratio = 0.2
        engine.acceptance_estimate = 0.95
        assert engine.choose_gamma(10) == 3
        engine.acceptance_estimate = 0.05
        assert engine.choose_gamma(10) == 1
        assert engine.choose_gamma(0) == 0
    finally:
        engine.adaptive = False


def test_quantized_engine_without_speculation():
    model, _ = build("llama")
    config = ember.QuantConfig("w4a16", group_size=32, method="rtn")
    w4a16 = ember.llm.compile(model, max_length=24, quantize=config, cache=False)
    ids, mask = _prompts(model, 2, 5)
    cache = w4a16.new_cache(2)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    got = w4a16.step(ids, positions, mask, cache).numpy()
    with torch.no_grad():
        expected = model(ids, attention_mask=mask, position_ids=positions).logits[:, -1].numpy()
    cosine = (
        (got * expected).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(expected, axis=-1)
    )
    assert cosine.min() > 0.95
    assert w4a16.generate(ids, mask, max_new_tokens=4).shape == (2, 13)


def test_misuse():
    model, _ = build("llama")
    with pytest.raises(UnsupportedError, match="w8a8"):
        ember.llm.compile(model, quantize="w8a8")
    with pytest.raises(UsageError, match="verifies with W4A16"):
        ember.llm.compile(model, quantize=ember.QuantConfig("w4a4", group_size=32),
                          speculative="qspec")  # fmt: skip
    with pytest.raises(UsageError, match="speculative"):
        ember.llm.compile(model, speculative="medusa")
    with pytest.raises(UnsupportedError, match="AWQ"):
        ember.llm.compile(model, quantize=ember.QuantConfig("w4a16", method="awq"))
