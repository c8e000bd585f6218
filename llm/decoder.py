"""`DecoderStep`: one forward step of a transformers decoder-only LM as a pure torch function of
its KV cache, the form ember captures for prefill and decode.

transformers' own forward updates a `Cache` object in place, which a compiled pure function cannot
do. `DecoderStep` reuses the model's submodules (embeddings, norms, projections, rotary embedding,
MLP or mixture of experts) and writes attention out explicitly: it takes the cache buffers as
inputs and returns the logits of the last position and the keys and values of the new positions;
the engine writes those into the buffers.

    cache_k[l], cache_v[l]: [batch, kv_heads, max_length, head_dim]
    attention_mask:          prefill [batch, new]: 1 for tokens, 0 for left padding;
                             decode [batch, max_length + 1]: 1 for the cache slots to attend to
                             (filled and not padding) and for the new token (the last column)
    position_ids:            [batch, new]

Every shape is static except the batch: decode attends over the whole cache buffer and masks the
slots not filled yet (symbolic cache lengths hit TVM codegen failures on this build; see
docs/llm.md), and prefill is compiled per prompt length.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch

from ember.errors import UnsupportedError

__all__ = ["SUPPORTED_MODEL_TYPES", "DecoderStep", "attention_bias"]

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "mixtral")


def attention_bias(attention_mask: torch.Tensor, new: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask [batch, 1, new, past + new]: causal, padding masked out, and every query
    allowed to see itself, so a padding row is never fully masked (no NaN from an empty softmax)."""
    total = attention_mask.shape[-1]
    past = total - new
    positions = torch.arange(total, device=attention_mask.device)
    rows = positions[past:].unsqueeze(-1)  # a slice, not arange + past: no symbolic value
    cols = positions.unsqueeze(0)
    visible = (cols <= rows).unsqueeze(0) & (attention_mask.unsqueeze(1) != 0)
    visible = visible | (cols == rows).unsqueeze(0)
    zero = torch.zeros((), dtype=dtype)
    masked = torch.full((), torch.finfo(dtype).min, dtype=dtype)
    return torch.where(visible, zero, masked).unsqueeze(1)


class DecoderStep(torch.nn.Module):
    """prefill (`past=False`): (input_ids, position_ids, attention_mask) -> (logits, *new_kv);
    decode (`past=True`): the same plus the cache buffers k_0, v_0, k_1, v_1, ...

    `logits` are the last position's, [batch, vocab]; new_kv is k_0, v_0, ... each
    [batch, kv_heads, new, head_dim].
    """

    def __init__(self, model: Any, *, past: bool) -> None:
        super().__init__()
        check_supported(model)
        self.model = model
        self.past = past
        self.rope = importlib.import_module(type(model).__module__).apply_rotary_pos_emb
        names = ["input_ids", "position_ids", "attention_mask"]
        if past:
            names += [f"{kv}_{i}" for i in range(len(model.model.layers)) for kv in "kv"]
        step = self.step

        def forward(*args: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return step(*args)

        # one named input per cache buffer: torch.export reads the signature (dynamic dims)
        forward.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(n, inspect.Parameter.POSITIONAL_ONLY) for n in names]
        )
        self.forward = forward

    def step(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        *cache: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        inner = self.model.model
        new = input_ids.shape[1]
        hidden = inner.embed_tokens(input_ids)
        cos, sin = inner.rotary_emb(hidden, position_ids)
        bias = self._bias(attention_mask, new, hidden.dtype)
        new_kv: list[torch.Tensor] = []
        for index, layer in enumerate(inner.layers):
            layer_cache = cache[2 * index : 2 * index + 2] if self.past else None
            residual = hidden
            attended, k, v = self._attention(
                layer.self_attn, layer.input_layernorm(hidden), cos, sin, bias, layer_cache
            )
            new_kv += [k, v]
            hidden = residual + attended
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        return (self.model.lm_head(inner.norm(self._logit_positions(hidden))), *new_kv)

    def _bias(self, attention_mask: torch.Tensor, new: int, dtype: torch.dtype) -> torch.Tensor:
        """The additive attention bias of the `new` positions over the mask's slots."""
        if self.past:  # the mask covers [cache slots..., the new token]: no causal part
            visible = attention_mask[:, None, None, :] != 0
            return torch.where(visible, 0.0, torch.finfo(dtype).min).to(dtype)
        return attention_bias(attention_mask, new, dtype)

    def _logit_positions(self, hidden: torch.Tensor) -> torch.Tensor:
        """The hidden states that get logits: the last position's, [batch, hidden]."""
        new = hidden.shape[1]
        return hidden[:, new - 1 :, :].reshape(hidden.shape[0], hidden.shape[2])

    def _attention(
        self,
        attn: Any,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        bias: torch.Tensor,
        layer_cache: tuple[torch.Tensor, ...] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, new, _ = x.shape
        d = attn.head_dim
        q = attn.q_proj(x).view(batch, new, -1, d).transpose(1, 2)
        k = attn.k_proj(x).view(batch, new, -1, d).transpose(1, 2)
        v = attn.v_proj(x).view(batch, new, -1, d).transpose(1, 2)
        q, k = self.rope(q, k, cos, sin)
        kv_heads = k.shape[1]
        groups = q.shape[1] // kv_heads
        keys, values = k, v
        if layer_cache is not None:
            keys = torch.cat([layer_cache[0], k], dim=2)
            values = torch.cat([layer_cache[1], v], dim=2)
        # repeat the KV heads (transformers' repeat_kv); grouping the queries instead
        # ([batch, kv_heads, groups, d] against the unrepeated cache) computes wrong results in
        # this TVM build's decode graph (see docs/llm.md)
        query = q
        keys = keys[:, :, None].expand(-1, -1, groups, -1, -1).flatten(1, 2)
        values = values[:, :, None].expand(-1, -1, groups, -1, -1).flatten(1, 2)
        # bias [batch, 1, new, total] broadcasts over heads
        scores = torch.matmul(query, keys.transpose(2, 3)) * attn.scaling + bias
        probs = torch.softmax(scores, dim=-1)
        out = torch.matmul(probs, values).reshape(batch, kv_heads * groups, new, d)
        out = out.transpose(1, 2).reshape(batch, new, kv_heads * groups * d)
        return attn.o_proj(out), k, v


def check_supported(model: Any) -> None:
    """Raise UnsupportedError unless `model` is a causal LM `DecoderStep` can run."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedError(
            f"ember.llm supports transformers causal LMs of types {', '.join(SUPPORTED_MODEL_TYPES)}"
            f"; got {type(model).__name__} (model_type {model_type!r}). Compile other models with "
            f"ember.compile (no KV cache)"
        )
