"""The model zoo used by the benchmarks and end-to-end tests: real transformers architectures at
tiny sizes (hidden 128, 2 layers, 4 heads, vocab 512, no KV cache) with seeded random weights."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["ZOO", "build"]

_COMMON = {
    "vocab_size": 512,
    "use_cache": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
}
_DECODER = {
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 256,
    "max_position_embeddings": 128,
    **_COMMON,
}
_MOE = {"num_local_experts": 4, "num_experts_per_tok": 2}


def _spec(config_name: str, model_name: str, **kwargs: Any) -> tuple[str, str, dict[str, Any]]:
    return config_name, model_name, kwargs


# name: (transformers config class, model class, config kwargs)
ZOO: dict[str, tuple[str, str, dict[str, Any]]] = {
    "bert": _spec("BertConfig", "BertModel", **_DECODER),
    "gpt2": _spec(
        "GPT2Config", "GPT2LMHeadModel", n_embd=128, n_layer=2, n_head=4, n_positions=128, **_COMMON
    ),
    "llama": _spec("LlamaConfig", "LlamaForCausalLM", num_key_value_heads=2, **_DECODER),
    "mistral": _spec("MistralConfig", "MistralForCausalLM", num_key_value_heads=2, **_DECODER),
    "qwen2": _spec("Qwen2Config", "Qwen2ForCausalLM", num_key_value_heads=2, **_DECODER),
    "phi3": _spec("Phi3Config", "Phi3ForCausalLM", **_DECODER),
    "gemma": _spec(
        "GemmaConfig", "GemmaForCausalLM", head_dim=32, num_key_value_heads=2, **_DECODER
    ),
    "opt": _spec(
        "OPTConfig",
        "OPTForCausalLM",
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        ffn_dim=256,
        max_position_embeddings=128,
        **_COMMON,
    ),
    "gpt_neox": _spec("GPTNeoXConfig", "GPTNeoXForCausalLM", **_DECODER),
    "falcon": _spec(
        "FalconConfig",
        "FalconForCausalLM",
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        **_COMMON,
    ),
    "t5_encoder": _spec(
        "T5Config",
        "T5EncoderModel",
        d_model=128,
        num_layers=2,
        num_heads=4,
        d_ff=256,
        d_kv=32,
        **_COMMON,
    ),
    "mixtral": _spec(
        "MixtralConfig", "MixtralForCausalLM", num_key_value_heads=2, **_MOE, **_DECODER
    ),
    "qwen2_moe": _spec(
        "Qwen2MoeConfig",
        "Qwen2MoeForCausalLM",
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=128,
        shared_expert_intermediate_size=256,
        num_key_value_heads=2,
        **_DECODER,
    ),
}


def build(
    name: str, batch: int = 2, seq: int = 16, seed: int = 0
) -> tuple[torch.nn.Module, torch.Tensor]:
    """The model `name` in eval mode and a batch of token ids for it."""
    import transformers

    config_name, model_name, kwargs = ZOO[name]
    torch.manual_seed(seed)
    config = getattr(transformers, config_name)(**kwargs)
    model = getattr(transformers, model_name)(config).eval()
    ids = torch.randint(
        0, _COMMON["vocab_size"], (batch, seq), generator=torch.Generator().manual_seed(seed)
    )
    return model, ids
