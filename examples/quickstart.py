"""ember's main job on embedded defaults: compile a model, run it, compare with eager, time both.

The model is a tiny GPT-2 built from a config with random weights (nothing is downloaded).
"""

from __future__ import annotations

import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

import ember


def _median_ms(fn, *args, repeat: int = 20) -> float:
    fn(*args)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1e3


def main() -> None:
    torch.manual_seed(0)
    config = GPT2Config(n_embd=128, n_layer=2, n_head=4, vocab_size=512, n_positions=64, use_cache=False)
    model = GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, config.vocab_size, (1, 32))

    start = time.perf_counter()
    compiled = ember.compile(model, example_inputs=(ids,), target="llvm")
    compile_s = time.perf_counter() - start

    with torch.no_grad():
        expected = model(ids).logits
        got = compiled(ids).logits
    error = ((got - expected).abs().max() / expected.abs().max()).item()
    with torch.no_grad():
        eager_ms = _median_ms(model, ids)
    ember_ms = _median_ms(compiled, ids)
    print(f"model: GPT-2 (hidden 128, 2 layers, 4 heads, vocab 512), input {tuple(ids.shape)}")
    print(f"compile time: {compile_s:.1f} s")
    print(f"max relative error vs eager: {error:.2e}")
    print(f"latency: ember {ember_ms:.2f} ms, torch eager {eager_ms:.2f} ms ({eager_ms / ember_ms:.2f}x)")


if __name__ == "__main__":
    main()
