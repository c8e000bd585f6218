"""ember.llm: a decoding runtime for transformers causal LMs (compiled prefill and decode steps
with a KV cache across steps) and FlashDecoding++'s flat-GEMM and asynchronous-softmax rewrites.

    engine = ember.llm.compile(hf_model, max_length=256)
    tokens = engine.generate(input_ids, attention_mask=mask, max_new_tokens=32)
"""

from ember.llm.build import compile
from ember.llm.engine import Engine, GenerateStats

__all__ = ["Engine", "GenerateStats", "compile"]
