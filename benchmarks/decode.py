"""Decoding benchmark: a Llama-style model of realistic width (hidden 1024, 4 layers, random
weights) with a KV cache; ember.llm against transformers eager (its DynamicCache) and
torch.compile of the same eager step, all measured in one run, with ratios.

    python -m benchmarks.decode            # reduced grid: batch 1, 8 x KV 128, 512
    python -m benchmarks.decode --full     # batch 1, 4, 16, 64 x KV 128, 512, 1024, 2048

Cases: `step` is one decode step (one new token per row) with KV cached tokens; `generate` is
tokens/s of greedy generation (prefill excluded) from a 120-token prompt. Every implementation's
logits are checked against eager before timing. FlashDecoding++'s flat-GEMM and asynchronous
softmax rewrites are not implemented yet (docs/llm.md): ember runs without them.
"""

from __future__ import annotations

import argparse
import functools
import time
from typing import Any

import torch

from benchmarks._harness import Row, Stats, compare, environment, print_table, write_jsonl

CONFIG = {
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_hidden_layers": 4,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
}


def _model() -> Any:
    import transformers

    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**CONFIG)).eval()


def _eager_step(model: Any, batch: int, kv: int) -> tuple[Any, Any]:
    """A decode step of transformers with `kv` cached tokens; the cache is cropped back to `kv`
    after each call so every call sees the same length."""
    from transformers import DynamicCache

    ids = torch.randint(0, CONFIG["vocab_size"], (batch, kv))
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(ids, past_key_values=cache, use_cache=True)
    token = torch.randint(0, CONFIG["vocab_size"], (batch, 1))
    position = torch.full((batch, 1), kv)

    def step(forward: Any = model) -> Any:
        with torch.no_grad():
            out = forward(token, past_key_values=cache, position_ids=position, use_cache=True)
        cache.crop(-1)  # drop the step's token: every call sees `kv` cached tokens
        return out.logits[:, -1]

    return step, (ids, token)


def _ember_step(engine: Any, prompt: Any, token: Any) -> Any:
    """The same decode step through ember.llm: the cache filled by ember's own prefill."""
    batch, kv = prompt.shape
    cache = engine.new_cache(batch)
    mask = torch.ones((batch, kv), dtype=torch.int64)
    engine.step(prompt, mask.cumsum(-1) - 1, mask, cache)
    full = torch.ones((batch, kv + 1), dtype=torch.int64)
    position = torch.full((batch, 1), kv)
    return lambda: engine.step(token, position, full, cache)


def step_rows(model: Any, batches: list[int], kvs: list[int], repeat: int) -> list[Row]:
    import ember.llm

    rows = []
    compiled = torch.compile(model)
    for kv in kvs:
        engine = ember.llm.compile(model, max_length=kv + 8, flat_gemm=False, async_softmax=False)
        for batch in batches:
            eager, (prompt, token) = _eager_step(model, batch, kv)
            ember_fn = _ember_step(engine, prompt, token)
            want = eager()
            torch.testing.assert_close(ember_fn(), want, atol=1e-3, rtol=1e-3)
            fns = {"eager": eager, "ember": ember_fn}
            try:
                torch.testing.assert_close(eager(compiled), want, atol=1e-3, rtol=1e-3)
                fns["torch.compile"] = functools.partial(eager, compiled)
            except Exception as err:  # reported, not fatal: the other columns still count
                print(f"torch.compile failed at batch {batch}, KV {kv}: {type(err).__name__}")
            stats = compare(fns, warmup=2, repeat=repeat, budget_s=20)
            rows.append(Row("step", f"batch={batch} kv={kv}", stats))
    return rows


def generate_row(model: Any, batch: int, new_tokens: int) -> Row:
    import ember.llm

    prompt = torch.randint(0, CONFIG["vocab_size"], (batch, 120))
    engine = ember.llm.compile(model, max_length=128 + new_tokens)
    engine.generate(prompt, max_new_tokens=2)  # builds the programs
    got = engine.generate(prompt, max_new_tokens=new_tokens)
    ember_s = engine.stats.decode_seconds / engine.stats.decode_steps
    with torch.no_grad():
        want = model.generate(prompt, max_new_tokens=new_tokens, do_sample=False)
        start = time.perf_counter()
        model.generate(prompt, max_new_tokens=new_tokens, do_sample=False)
        eager_s = (time.perf_counter() - start) / (new_tokens - 1)  # prefill included: favours
    same = torch.equal(got, want)
    per_token = {"eager": Stats.of([eager_s]), "ember": Stats.of([ember_s])}
    extra = {"same_tokens_as_eager": same}
    return Row("generate", f"batch={batch} new={new_tokens}", per_token, extra=extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the full batch x KV grid")
    parser.add_argument("--batches", help="comma-separated batch sizes (overrides the grid)")
    parser.add_argument("--kvs", help="comma-separated KV lengths (overrides the grid)")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    batches, kvs = ([1, 4, 16, 64], [128, 512, 1024, 2048]) if args.full else ([1, 8], [128, 512])
    batches = [int(b) for b in args.batches.split(",")] if args.batches else batches
    kvs = [int(k) for k in args.kvs.split(",")] if args.kvs else kvs
    torch.set_num_threads(2)
    model = _model()
    rows = step_rows(model, batches, kvs, args.repeat)
    rows.append(generate_row(model, 1, 32))
    print_table(rows, baseline="eager")
    print(
        f"generate: ember's greedy tokens equal eager's: {rows[-1].extra['same_tokens_as_eager']}"
    )
    write_jsonl(rows, "bench-results/decode.jsonl", env=environment(), target="llvm")


if __name__ == "__main__":
    main()
