"""ember.llm: a decoding runtime for transformers causal LMs (compiled prefill and decode steps
with a KV cache across steps).

    engine = ember.llm.compile(hf_model, max_length=256)
    tokens = engine.generate(input_ids, attention_mask=mask, max_new_tokens=32)

Importing the package is cheap (the CLI imports `ember.llm.cli`); torch loads with `compile`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Engine", "GenerateStats", "compile"]


def __getattr__(name: str) -> Any:
    if name == "compile":
        from ember.llm.build import compile

        return compile
    if name in ("Engine", "GenerateStats"):
        from ember.llm import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'ember.llm' has no attribute {name!r}")
