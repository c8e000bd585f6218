"""QSPEC benchmark: greedy decode tokens/s of fp32, W4A16 alone, W4A4 alone and QSPEC (W4A4
drafts verified by W4A16 over one packed 4-bit weight set) at several γ, with the acceptance
rate and whether QSPEC's tokens equal W4A16's.

    python -m benchmarks.qspec                      # trained byte-level Llama + a wide Llama
    python -m benchmarks.qspec --gammas 1,2,3,4,6 --new-tokens 64 --train-steps 1200

Models:
- a byte-level Llama (hidden 256, 2 layers, 4 heads; transformers' LlamaForCausalLM, the
  architecture ember.llm runs) trained here on the stdlib's sources with quant_accuracy.py's
  corpus and batches (its TinyLM is not a transformers model, which ember.llm needs), cached in
  ~/.cache/ember/qspec_llama-<steps>.pt; prompts are held-out source text, calibration
  training text. Acceptance is meaningful here.
- a Llama of realistic width (decode.py's: hidden 1024, 4 layers, vocab 32000) with random
  weights: its speed ratios count, its acceptance does not (near-uniform logits).

Every engine decodes the same prompts; tokens/s is decode tokens (all rows) per second of
decoding (prefill excluded), the median of `--repeat` runs interleaved across engines. Ends with
`qspec: speedup=S acceptance=A identical=B` for the trained model's best γ against W4A16 alone
(the wide model's with `--models wide`).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
from torch import nn

import ember
import ember.llm
from benchmarks.quant_accuracy import CACHE, batches, corpus, fit

WIDE = {"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 4,
        "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": 32000}  # fmt: skip
BYTES = {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 256,
         "max_position_embeddings": 512, "bos_token_id": 0, "eos_token_id": 0,
         "pad_token_id": 0}  # fmt: skip


def trained_llama(steps: int, train: np.ndarray) -> Any:
    """The byte-level Llama, trained `steps` steps of 32 x 128 bytes (cached)."""
    import transformers

    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**BYTES))
    cache = CACHE / f"qspec_llama-{steps}.pt"
    if cache.exists():
        model.load_state_dict(torch.load(cache))
        return model.eval()
    return fit(model, lambda ids: model(ids).logits, steps, train, cache)


def engines(model: Any, calibration: list[Any], gammas: list[int], max_length: int) -> dict:
    """name -> (engine, generate keyword arguments)."""
    w4a16 = ember.QuantConfig("w4a16", calibration=calibration)
    w4a4 = ember.QuantConfig("w4a4", calibration=calibration)
    made: dict[str, tuple[Any, dict[str, Any]]] = {
        "fp32": (ember.llm.compile(model, max_length=max_length), {}),
        "w4a4": (ember.llm.compile(model, max_length=max_length, quantize=w4a4), {}),
    }
    qspec = ember.llm.compile(model, max_length=max_length, quantize=w4a16, speculative="qspec",
                              draft_len=max(gammas))  # fmt: skip
    made["w4a16"] = (qspec, {"speculative": False})  # W4A16 alone: the same weights, no drafts
    for gamma in gammas:
        made[f"qspec γ={gamma}"] = (qspec, {"draft_len": gamma})
    made["qspec adaptive"] = (qspec, {})
    return made


def run(engine: Any, prompt: Any, new_tokens: int, **kw: Any) -> Any:
    tokens = engine.generate(prompt, max_new_tokens=new_tokens, **kw)
    return tokens, engine.stats


def measure(name: str, model: Any, prompt: Any, calibration: list[Any], args: Any) -> dict:
    max_length = prompt.shape[1] + args.new_tokens + 8
    made = engines(model, calibration, args.gammas, max_length)
    qspec = made["w4a16"][0]
    qspec.warm(prompt.shape[0])  # the draft step and every γ's verification
    speeds: dict[str, list[float]] = {key: [] for key in made}
    results: dict[str, Any] = {}
    for key, (engine, kw) in made.items():  # builds, and the tokens to compare
        results[key] = run(engine, prompt, args.new_tokens, **kw)
    for _ in range(args.repeat):
        for key, (engine, kw) in made.items():
            _, stats = run(engine, prompt, args.new_tokens, **kw)
            speeds[key].append(stats.decode_tokens_per_second)
    reference = results["w4a16"][0]
    base = float(np.median(speeds["w4a16"]))
    print(f"\n{name}: batch {prompt.shape[0]}, prompt {prompt.shape[1]}, {args.new_tokens} new "
          f"tokens; weights fp32 {_fp32_bytes(model) / 1e6:.1f} MB, shared 4-bit set "
          f"{qspec.weight_bytes / 1e6:.2f} MB (+{qspec.options['weights'].draft_bytes / 1e6:.2f}"
          f" MB draft-only comp); 2 shared, loaded cores")  # fmt: skip
    print(f"{'engine':<16} {'tokens/s':>9} {'x w4a16':>8} {'acceptance':>11} {'= w4a16':>8}")
    summary = {}
    for key in made:
        tokens, stats = results[key]
        speed = float(np.median(speeds[key]))
        acceptance = getattr(stats, "acceptance", None) if key.startswith("qspec") else None
        same = torch.equal(tokens, reference)
        accepted = "" if acceptance is None else f"{acceptance:.3f}"
        print(f"{key:<16} {speed:9.1f} {speed / base:8.2f} {accepted:>11} {same!s:>8}")
        if acceptance is not None:
            summary[key] = (speed / base, acceptance, same)
    return summary


def kernels(rows_list: list[int], k: int = 1024, group: int = 128, repeat: int = 50) -> None:
    """The two kernels over one packed K x K weight: W4A16 `int4_matmul` against QSPEC's W4A4
    `int4_panel_group_matmul` (with its activation quantization), per row count."""
    import tvm

    from ember.codegen.build import build
    from ember.ir import Builder
    from ember.ir.ops import Int4MatMul, Int4PanelGroupMatMul, QuantizeRows
    from ember.llm.quant import SharedWeights
    from ember.runtime import Executor

    rng = np.random.default_rng(0)
    shared = SharedWeights(group)
    shared.add("w", rng.standard_normal((k, k)).astype(np.float32), np.zeros(k // group, bool))
    print(f"\nkernels, K = N = {k}, group {group} (median ms of {repeat}; 2 shared, loaded cores)")
    print(f"{'rows':>5} {'w4a16':>8} {'w4a4':>8} {'w4a16/w4a4':>11}")
    for rows in rows_list:
        times = []
        for draft in (False, True):
            names = ["w.p", "w.s", "w.o"] + (["w.comp"] if draft else [])
            b = Builder()
            x = b.input((rows, k), "float32", "x")
            weights = [b.input(shared.arrays[n].shape, shared.arrays[n].dtype) for n in names]
            if draft:
                xq, xs = b.emit_multi(QuantizeRows(bits=4, group_size=group), x)
                b.output(b.emit(Int4PanelGroupMatMul(group_size=group), xq, xs, *weights))
            else:
                b.output(b.emit(Int4MatMul(group_size=group), x, *weights))
            built = build(b.build(), {"kind": "llvm", "mcpu": "sapphirerapids", "num-cores": 2})
            run = Executor(built.executable, target=built.target).run
            args = [tvm.runtime.tensor(rng.standard_normal((rows, k)).astype(np.float32))]
            args += [tvm.runtime.tensor(shared.arrays[n]) for n in names]
            for _ in range(5):
                run(args)
            samples = []
            for _ in range(repeat):
                start = time.perf_counter()
                run(args)
                samples.append(time.perf_counter() - start)
            times.append(float(np.median(samples)) * 1e3)
        print(f"{rows:>5} {times[0]:8.3f} {times[1]:8.3f} {times[0] / times[1]:11.2f}")


def _fp32_bytes(model: Any) -> int:
    return sum(m.weight.numel() * 4 for m in model.modules() if isinstance(m, nn.Linear))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gammas", default="2,4", help="fixed draft lengths (plus adaptive)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--models", default="kernels,trained,wide", help="kernels,trained,wide")
    args = parser.parse_args()
    args.gammas = [int(g) for g in args.gammas.split(",")]
    torch.set_num_threads(2)
    summary = {}
    if "kernels" in args.models:
        kernels([1, 8, 16, 64])
    if "wide" in args.models:
        import transformers

        torch.manual_seed(0)
        wide = transformers.LlamaForCausalLM(transformers.LlamaConfig(**WIDE)).eval()
        prompt = torch.randint(0, WIDE["vocab_size"], (args.batch, 64))
        calibration = [(torch.randint(0, WIDE["vocab_size"], (1, 64)),)]
        summary = measure("Llama hidden 1024 (random weights)", wide, prompt, calibration, args)
    if "trained" in args.models:  # last: the summary line is the trained model's
        train, held = corpus()
        rng = np.random.default_rng(2)
        model = trained_llama(args.train_steps, train)
        calibration = [(c[None, :-1],) for c in batches(train, 8, rng)]
        prompt = batches(held, args.batch, rng)[:, :64]
        summary = measure("trained byte-level Llama", model, prompt, calibration, args)
    if not summary:
        return
    best = max(summary, key=lambda key: summary[key][0])
    speedup, acceptance, same = summary[best]
    print(f"(best: {best})")
    print(f"qspec: speedup={speedup:.2f} acceptance={acceptance:.3f} identical={same}")


if __name__ == "__main__":
    main()
