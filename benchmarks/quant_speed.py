"""Quantized GEMM/GEMV and whole-model speed: ember W8A8 / W4A16 / W4A4 vs torch fp32, torch's
int8 paths (dynamic-quantized Linear, `torch._int_mm`) and ember fp32, on decode (M=1) and
prefill shapes, plus a GEMV whose fp32 weight (N=K=8192: 268 MB) exceeds the 105 MB L3, and a
Llama (hidden 1024, 4 layers, 268 MB of fp32 weights) on 4 tokens (no KV cache: a decode-like
step of M=4 rows) and on 128 tokens (prefill).

    python -m benchmarks.quant_speed                      # all of it
    python -m benchmarks.quant_speed --m 1,128 --nk 1024 --gemv-nk 0 --no-model  # fewer
    python -m benchmarks.quant_speed --no-gemm            # the Llama only

Each case checks every output against fp32 before timing (relative error printed) and prints
the weight bytes each scheme stores. GEMM cases use round-to-nearest weights (calibration does
not change a kernel's speed); the model uses each scheme's calibrated method (SmoothQuant, AWQ,
Atom: their activation scaling and reordering cost time) on one random batch; W8A8 and W4A4 also
unfused (QuantConfig(fuse=False): `quantize_rows` kernels after the norms and the SiLU gating
instead of `fused_quantize_rows`), with the unfused/fused time ratio.
Results: bench-results/quant_speed.jsonl.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from benchmarks._harness import Row, compare, environment, print_table, write_jsonl
from ember.codegen.build import build
from ember.ir import Builder
from ember.ir.ops import MatMul
from ember.passes import PASSES
from ember.runtime import Executor

TARGET = {"kind": "llvm", "mcpu": "sapphirerapids", "num-cores": 2}
SCHEMES = {
    "w8a8": ("quantize-w8a8", {"alpha": 0.0}),
    "w4a16": ("quantize-w4a16", {"method": "rtn"}),
    "w4a4": ("quantize-w4a4", {"method": "rtn"}),
}


def _graph(m: int, w: np.ndarray):
    b = Builder()
    x = b.input((m, w.shape[0]), "float32", "x")
    b.output(b.emit(MatMul(), x, b.const(w)))
    return b.build()


def _ember(g):
    result = build(g, TARGET)
    executor = Executor(result.executable, target=result.target)
    return lambda x: executor.run([x])[0]


def _case(m: int, nk: int, rng: np.random.Generator) -> tuple[Row, dict[str, float]]:
    w = (rng.standard_normal((nk, nk)) / np.sqrt(nk)).astype(np.float32)
    x = rng.standard_normal((m, nk)).astype(np.float32)
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    exact = x @ w
    g = _graph(m, w)
    runs = {"torch fp32": lambda: xt @ wt}
    linear = torch.nn.Linear(nk, nk, bias=False)
    linear.weight.data = wt.T.contiguous()
    dynamic = torch.ao.quantization.quantize_dynamic(linear, {torch.nn.Linear}, dtype=torch.qint8)
    runs["torch dyn-int8"] = lambda: dynamic(xt)
    a8 = torch.randint(-127, 127, (m, nk), dtype=torch.int8)
    b8 = torch.randint(-127, 127, (nk, nk), dtype=torch.int8)
    try:
        torch._int_mm(a8, b8)
        runs["torch _int_mm"] = lambda: torch._int_mm(a8, b8)
    except RuntimeError:  # oneDNN's s8s8s32 wants M > 16 on CPU
        pass
    ember_fp32 = _ember(g)
    runs["ember fp32"] = lambda: ember_fp32(x)
    errors = {"ember fp32": _rel(ember_fp32(x).numpy(), exact)}
    weight_bytes = {"fp32": w.nbytes}
    for scheme, (name, options) in SCHEMES.items():
        quantized = PASSES[name](g, **options)
        weight_bytes[scheme] = sum(a.nbytes for a in quantized.consts.values())
        fn = _ember(quantized)
        errors[f"ember {scheme}"] = _rel(fn(x).numpy(), exact)
        runs[f"ember {scheme}"] = lambda fn=fn: fn(x)
    stats = compare(runs, warmup=3, repeat=20, budget_s=3.0)
    extra = {"rel_error": errors, "weight_bytes": weight_bytes}
    return Row("gemm", f"M={m} N=K={nk}", stats, extra=extra), errors | {
        f"bytes {k}": v for k, v in weight_bytes.items()
    }


def _rel(actual: np.ndarray, exact: np.ndarray) -> float:
    return float(np.linalg.norm(actual - exact) / np.linalg.norm(exact))


def _llama() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=1024, intermediate_size=2816, num_hidden_layers=4,
                         num_attention_heads=16, num_key_value_heads=4, vocab_size=8192,
                         max_position_embeddings=512, use_cache=False)  # fmt: skip
    return LlamaForCausalLM(config).eval()


def _model_case(model: torch.nn.Module, tokens: int) -> tuple[Row, dict[str, float]]:
    import warnings

    import ember

    ids = torch.randint(0, 8192, (1, tokens), generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    calibration = [  # >= 128 tokens, in the compiled input shape
        (torch.randint(0, 8192, (1, tokens), generator=generator),)
        for _ in range(max(1, 128 // tokens))
    ]
    with torch.no_grad():
        exact = model(ids).logits.numpy()
    dynamic = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    runs = {"torch fp32": lambda: model(ids), "torch dyn-int8": lambda: dynamic(ids)}
    info: dict[str, float] = {}
    # "unfused": dynamic activation quantization as its own kernel after the norm / SiLU gating
    variants = [("fp32", True), *((s, True) for s in SCHEMES), ("w8a8", False), ("w4a4", False)]
    for scheme, fuse in variants:
        config = None
        if scheme != "fp32":
            config = ember.QuantConfig(scheme, calibration=calibration, fuse=fuse)
        name = f"ember {scheme}" + ("" if fuse else " unfused")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compiled = ember.compile(model, (ids,), cache=False, quantize=config)
        if fuse:
            consts = compiled.programs[0].graph.consts.values()
            info[f"bytes {scheme}"] = sum(a.nbytes for a in consts)
        info[name] = _rel(compiled(ids).logits.numpy(), exact)
        runs[name] = lambda compiled=compiled: compiled(ids)
    with torch.no_grad():
        info["torch dyn-int8"] = _rel(dynamic(ids).logits.numpy(), exact)
        stats = compare(runs, warmup=2, repeat=10, budget_s=5.0)
    for scheme in ("w8a8", "w4a4"):
        fused, unfused = stats[f"ember {scheme}"], stats[f"ember {scheme} unfused"]
        info[f"{scheme} unfused/fused"] = unfused.median_ms / fused.median_ms
    return Row("llama", f"tokens={tokens}", stats, extra=info), info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", default="1,16,128,512")
    parser.add_argument("--nk", default="1024,4096")
    parser.add_argument("--gemv-nk", type=int, default=8192, help="M=1 GEMV beyond L3; 0: skip")
    parser.add_argument("--no-model", action="store_true", help="skip the whole-model cases")
    parser.add_argument("--no-gemm", action="store_true", help="only the whole-model cases")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    shapes = [(m, nk) for nk in map(int, args.nk.split(",")) for m in map(int, args.m.split(","))]
    if args.no_gemm:
        shapes, args.gemv_nk = [], 0
    rows = []
    for m, nk in shapes + ([(1, args.gemv_nk)] if args.gemv_nk else []):
        row, info = _case(m, nk, rng)
        rows.append(row)
        print(f"M={m} N=K={nk}: " + ", ".join(f"{k} {v:.3g}" for k, v in info.items()), flush=True)
    if not args.no_model:
        model = _llama()
        for tokens in (4, 128):  # 1 token: ember cannot build the attention (see the docs)
            row, info = _model_case(model, tokens)
            rows.append(row)
            print(f"llama {tokens} tokens: " + ", ".join(f"{k} {v:.3g}" for k, v in info.items()),
                  flush=True)  # fmt: skip
    print_table(rows, baseline="torch fp32")
    Path("bench-results").mkdir(exist_ok=True)
    write_jsonl(rows, "bench-results/quant_speed.jsonl", env=environment(), target=str(TARGET))


if __name__ == "__main__":
    main()
