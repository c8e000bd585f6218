"""ember.llm on a tiny Llama: the captured prefill/decode steps against transformers, compiled and
through ember's reference interpreter, and generate against transformers' own generate."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import ember.llm  # noqa: E402
from ember.errors import InputError, UnsupportedError  # noqa: E402
from ember.ir import interpret  # noqa: E402
from examples.zoo import build  # noqa: E402


def _prompts(model: Any) -> tuple[Any, Any]:
    """Two prompts, 9 and 5 tokens, left-padded to 9."""
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(3, model.config.vocab_size, (2, 9), generator=generator)
    mask = torch.ones_like(ids)
    ids[1, :4] = model.config.pad_token_id
    mask[1, :4] = 0
    return ids, mask


@pytest.fixture(scope="module")
def llama() -> tuple[Any, Any]:
    model, _ = build("llama")
    return model, ember.llm.compile(model, max_length=32, cache=False)


def _reference_logits(model: Any, ids: Any, mask: Any) -> np.ndarray:
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        return model(ids, attention_mask=mask, position_ids=positions).logits[:, -1].numpy()


@pytest.mark.slow
def test_compiled_prefill_matches_transformers(llama: tuple[Any, Any]):
    model, engine = llama
    ids, mask = _prompts(model)
    cache = engine.new_cache(2)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = engine.step(ids, positions, mask, cache)
    np.testing.assert_allclose(logits.numpy(), _reference_logits(model, ids, mask), atol=1e-4)


@pytest.mark.slow
def test_decode_graph_matches_transformers_in_interpreter(llama: tuple[Any, Any]):
    """The captured decode step (cache buffers, masked unfilled slots) has the model's semantics."""
    model, engine = llama
    ids, mask = _prompts(model)
    cache = engine.new_cache(2)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    token = engine.step(ids, positions, mask, cache).argmax(-1)[:, None]
    slots = np.zeros((2, engine.max_length + 1), dtype=np.int64)
    slots[:, :9] = mask.numpy()
    slots[:, -1] = 1
    arrays = [token.numpy(), positions[:, -1:].numpy() + 1, slots, *(c.numpy() for c in cache)]
    got = interpret(engine.program(2, 0).graph, *arrays)[0].reshape(2, -1)
    full, full_mask = torch.cat([ids, token], 1), torch.cat([mask, torch.ones_like(token)], 1)
    np.testing.assert_allclose(got, _reference_logits(model, full, full_mask), atol=1e-4)


@pytest.mark.slow
def test_generate_matches_transformers_generate(llama: tuple[Any, Any]):
    model, engine = llama
    _check_generate(model, engine)
    assert engine.stats.decode_steps == 9
    ids, _ = _prompts(model)  # one row alone gives the tokens of its row in the batch
    assert torch.equal(engine.generate(ids[:1], max_new_tokens=10)[0], _generate(model, ids)[0])


def _generate(model: Any, ids: Any, mask: Any = None) -> Any:
    with torch.no_grad():
        return model.generate(
            ids, attention_mask=mask, max_new_tokens=10, do_sample=False, use_cache=True
        )


def _check_generate(model: Any, engine: Any) -> None:
    ids, mask = _prompts(model)
    got = engine.generate(ids, mask, max_new_tokens=10)
    want = _generate(model, ids, mask)
    assert torch.equal(got, want), f"ember {got.tolist()}\ntransformers {want.tolist()}"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mistral", "qwen2", "mixtral"])
def test_other_families_match_transformers_generate(name: str):
    model, _ = build(name)
    _check_generate(model, ember.llm.compile(model, max_length=32, cache=False))


def test_errors_name_the_fix():
    model, _ = build("gpt2")
    with pytest.raises(UnsupportedError, match="model_type 'gpt2'"):
        ember.llm.compile(model)
    llama, _ = build("llama")
    with pytest.raises(UnsupportedError, match="quantize"):
        ember.llm.compile(llama, quantize="w8a8")
    mistral, _ = build("mistral")
    mistral.config.sliding_window = 8
    with pytest.raises(UnsupportedError, match="sliding-window"):
        ember.llm.compile(mistral, max_length=16)


@pytest.mark.slow
def test_generate_checks_lengths(llama: tuple[Any, Any]):
    _, engine = llama
    with pytest.raises(InputError, match="exceeds max_length=32"):
        engine.generate(torch.ones((1, 30), dtype=torch.int64), max_new_tokens=5)
