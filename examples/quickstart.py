"""A model factory for ember's command line: `ember bench examples/quickstart.py:gpt2`.

The model is a tiny GPT-2 built from a config with seeded random weights (nothing is downloaded).
"""

from __future__ import annotations

from typing import Any


def gpt2(batch: int = 1, seq: int = 32) -> tuple[Any, tuple[Any, ...]]:
    """GPT-2 (hidden 128, 2 layers, 4 heads, vocab 512) and one batch of token ids."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_embd=128, n_layer=2, n_head=4, vocab_size=512, n_positions=128,
                        use_cache=False, bos_token_id=1, eos_token_id=2)  # fmt: skip
    ids = torch.randint(
        0, config.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(0)
    )
    return GPT2LMHeadModel(config).eval(), (ids,)
