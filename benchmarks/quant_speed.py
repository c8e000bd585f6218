"""Quantized GEMM/GEMV speed: ember W8A8 / W4A16 / W4A4 vs torch fp32, torch's int8 paths
(dynamic-quantized Linear, `torch._int_mm`) and ember fp32, on decode (M=1) and prefill shapes.

    python benchmarks/quant_speed.py                      # M 1,16,128,512 x N=K 1024,4096
    python benchmarks/quant_speed.py --m 1,128 --nk 1024  # fewer shapes

Each case checks every output against fp32 before timing (relative error printed) and prints
the weight bytes each scheme stores. Round-to-nearest weights (calibration does not change
speed). Results: bench-results/quant_speed.jsonl.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from _harness import Row, compare, environment, print_table, write_jsonl

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", default="1,16,128,512")
    parser.add_argument("--nk", default="1024,4096")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    rows = []
    for nk in (int(v) for v in args.nk.split(",")):
        for m in (int(v) for v in args.m.split(",")):
            row, info = _case(m, nk, rng)
            rows.append(row)
            print(
                f"M={m} N=K={nk}: " + ", ".join(f"{k} {v:.3g}" for k, v in info.items()), flush=True
            )
    print_table(rows, baseline="torch fp32")
    Path("bench-results").mkdir(exist_ok=True)
    write_jsonl(rows, "bench-results/quant_speed.jsonl", env=environment(), target=str(TARGET))


if __name__ == "__main__":
    main()
