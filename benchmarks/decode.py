"""Decoding benchmark: a Llama-style model of realistic width (hidden 1024, 4 layers, random
weights) with a KV cache; ember.llm against transformers eager (its DynamicCache) and
torch.compile of the same eager step, all measured in one run, with ratios.

    python -m benchmarks.decode            # reduced grid: batch 1, 8 x KV 512
    python -m benchmarks.decode --full     # batch 1, 4, 16, 64 x KV 128, 512, 1024, 2048

Cases: `step` is one decode step (one new token per row) with KV cached tokens; `generate` is
tokens/s of greedy generation (prefill excluded) from a 120-token prompt. Every implementation's
logits are checked against eager before timing. ember runs in four variants: both FlashDecoding++
rewrites (`ember`), flat GEMM alone (`ember-flat`), asynchronous softmax alone (`ember-async`) and
neither (`ember-none`); the ember cache is filled from transformers' prefill (no prefill builds).
`kernels` rows split each variant's decode step by kernel (VM profile): attention-only (softmax,
attention matmuls, cache concatenation, async_softmax) and linear-only (packed_matmul, flat GEMM).
Every ember variant runs one decode program built for a symbolic batch; `ember-static` is `ember`
with one program per batch size instead (the kernels chosen at build time).

`dispatch` rows time the flat GEMM's run-time dispatch alone: for the model's linear shapes
(N, K), one program with a symbolic M (`ember-symbolic`: the kernel chosen by M at run time from
the table profiled on the symbolic kernels) against the program built for that M
(`ember-static`, from the per-M profile), torch's F.linear as baseline; the shape column names
the static/symbolic kernels; plus the flat kernel alone at M = 7 (all rows in the symbolic
kernel's 7-row tail tile).

    python -m benchmarks.decode --dispatch-only --dispatch-rows 1,6,16,64
"""

from __future__ import annotations

import argparse
import functools
import time
from typing import Any

import numpy as np
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

    return step, (cache, token)


VARIANTS = {
    "ember": {"flat_gemm": True, "async_softmax": True},
    "ember-flat": {"flat_gemm": True, "async_softmax": False},
    "ember-async": {"flat_gemm": False, "async_softmax": True},
    "ember-none": {"flat_gemm": False, "async_softmax": False},
    "ember-static": {"flat_gemm": True, "async_softmax": True, "symbolic_batch": False},
}
LINEAR_SHAPES = ((2816, 1024), (1024, 1024))  # (N, K): the MLP's up/gate, attention's q/k/v/o
# linear layers' kernels: fused ones are named after their first op (fused_flat_matmul_add...)
LINEAR_KERNELS = ("packed_matmul", "flat_gemm", "flat_matmul")
KINDS = ("static", "symbolic")  # the dispatch rows' programs, each with its profiled table
FLAT_ROWS = 7  # the flat kernel alone at M = 7: the symbolic kernel's 7-row tail tile


def _engine(model: Any, max_length: int, flags: dict[str, bool]) -> Any:
    import ember.llm

    flags = dict(flags)
    symbolic = flags.pop("symbolic_batch", True)
    engine = ember.llm.compile(model, max_length=max_length, **flags)
    engine.options["symbolic_batch"] = symbolic
    return engine


def _ember_step(engine: Any, eager_cache: Any, token: Any) -> Any:
    """The same decode step through ember.llm, its cache filled from transformers' prefill."""
    batch = token.shape[0]
    kv = eager_cache.get_seq_length()
    cache = engine.new_cache(batch)
    for i, layer in enumerate(eager_cache.layers):
        cache[2 * i][:, :, :kv] = layer.keys[:, :, :kv]
        cache[2 * i + 1][:, :, :kv] = layer.values[:, :, :kv]
    full = torch.ones((batch, kv + 1), dtype=torch.int64)
    position = torch.full((batch, 1), kv)
    return lambda: engine.step(token, position, full, cache)


def _split(engine: Any, batch: int, fn: Any, calls: int = 5) -> dict[str, float]:
    """Median seconds of attention and linear kernels in one decode step (VM profile)."""
    from ember.runtime.library import ffi
    from ember.runtime.profiling import profile_call

    program = engine.program(batch, 0)
    samples: dict[str, list[float]] = {"attention": [], "linear": []}
    for _ in range(calls):
        # flat_matmul_dispatch (symbolic M) is a Relax function: its kernels are counted
        rows = [
            r
            for r in profile_call(program.executor.vm, ffi(), fn)
            if "flat_matmul_dispatch" not in r.name
        ]
        linear = [r for r in rows if any(key in r.name for key in LINEAR_KERNELS)]
        attention = [
            r
            for r in rows
            if any(key in r.name for key in ("softmax", "concat", "matmul")) and r not in linear
        ]
        samples["linear"].append(sum(r.total_ms for r in linear) / 1e3)
        samples["attention"].append(sum(r.total_ms for r in attention) / 1e3)
    return {part: float(np.median(seconds)) for part, seconds in samples.items()}


def step_rows(model: Any, batches: list[int], kvs: list[int], repeat: int) -> list[Row]:
    rows = []
    compiled = torch.compile(model)
    for kv in kvs:
        engines = {name: _engine(model, kv + 8, flags) for name, flags in VARIANTS.items()}
        for batch in batches:
            eager, (cache, token) = _eager_step(model, batch, kv)
            want = eager()
            fns = {"eager": eager}
            for name, engine in engines.items():
                fns[name] = _ember_step(engine, cache, token)
                torch.testing.assert_close(fns[name](), want, atol=1e-3, rtol=1e-3)
            try:
                torch.testing.assert_close(eager(compiled), want, atol=1e-3, rtol=1e-3)
                fns["torch.compile"] = functools.partial(eager, compiled)
            except Exception as err:  # reported, not fatal: the other columns still count
                print(f"torch.compile failed at batch {batch}, KV {kv}: {type(err).__name__}")
            stats = compare(fns, warmup=2, repeat=repeat, budget_s=20)
            rows.append(Row("step", f"batch={batch} kv={kv}", stats))
            split = {n: _split(e, batch, fns[n]) for n, e in engines.items()}
            for part in ("attention", "linear"):
                kernels = {n: Stats.of([seconds[part]]) for n, seconds in split.items()}
                rows.append(Row(f"{part}-only", f"batch={batch} kv={kv}", kernels))
            _ratios(stats)
    return rows


def dispatch_rows(ms: list[int], repeat: int) -> list[Row]:
    """One symbolic-M flat GEMM program against per-M static ones (module doc), each with the
    table profiled for its kind of program, at `ms`; and with the flat kernel alone at
    FLAT_ROWS. Each checked against numpy first; prints symbolic / static per case."""
    from ember.codegen.flat_gemm import profile_dispatch

    rng = np.random.default_rng(0)
    rows = []
    for n, k in LINEAR_SHAPES:
        w = rng.standard_normal((k, n)).astype(np.float32)
        tables = {kind: profile_dispatch(n, k, symbolic=kind == "symbolic") for kind in KINDS}
        print(f"dispatch tables for N={n}, K={k}: {tables}")
        rows += _dispatch_cases(w, tables, ms, rng, repeat)
        flat = ((FLAT_ROWS, "flat"),)
        rows += _dispatch_cases(w, dict.fromkeys(KINDS, flat), [FLAT_ROWS], rng, repeat)
    return rows


def _dispatch_cases(
    w: np.ndarray, tables: dict[str, Any], ms: list[int], rng: Any, repeat: int
) -> list[Row]:
    import sympy

    from ember.ir.ops import dispatch_kernel

    k, n = w.shape
    weight = torch.from_numpy(w.T.copy())
    symbolic = _flat_program(sympy.Symbol("m"), w, tables["symbolic"])
    rows = []
    for m in ms:
        x = rng.standard_normal((m, k)).astype(np.float32)
        fns = {
            "torch": functools.partial(torch.nn.functional.linear, torch.from_numpy(x), weight),
            "ember-static": functools.partial(_flat_program(m, w, tables["static"]).run, [x]),
            "ember-symbolic": functools.partial(symbolic.run, [x]),
        }
        for name in ("ember-static", "ember-symbolic"):
            got = fns[name]()[0].numpy()
            np.testing.assert_allclose(got, x @ w, rtol=1e-4, atol=1e-3, err_msg=name)
        stats = compare(fns, warmup=3, repeat=repeat, budget_s=10)
        kernels = "/".join(dispatch_kernel(tables[kind], m) for kind in KINDS)
        rows.append(Row("dispatch", f"M={m} N={n} K={k} {kernels}", stats))
        ratio = stats["ember-symbolic"].median_ms / stats["ember-static"].median_ms
        print(f"  M={m} N={n} K={k} ({kernels}): symbolic / static {ratio:.2f}x")
    return rows


def _flat_program(m: Any, w: np.ndarray, table: tuple[tuple[int, str], ...]) -> Any:
    """The executor of x[m, K] @ w as one flat_matmul with `table` (m an int or a symbol)."""
    from ember.api import compile_graph
    from ember.codegen.flat_gemm import PANEL
    from ember.ir import Builder
    from ember.ir.ops import FlatMatMul, pack_panels

    k, n = w.shape
    b = Builder("linear")
    x = b.input((m, k), "float32", "x")
    b.output(b.emit(FlatMatMul(columns=n, dispatch=table), x, b.const(pack_panels(w, PANEL))))
    return compile_graph(b.build(), "llvm", (), cache=False).executor


def _ratios(stats: dict[str, Stats]) -> None:
    """The issue's goals: ember over ember without rewrites and over the best peer."""
    ember = stats["ember"].median_ms
    peers = [stats[n].median_ms for n in ("eager", "torch.compile") if n in stats]
    medians = ", ".join(f"{name} {s.median_ms:.1f} ms" for name, s in stats.items())
    print(
        f"  {medians}\n  ember vs ember-none {stats['ember-none'].median_ms / ember:.2f}x, "
        f"vs best peer {min(peers) / ember:.2f}x"
    )


def generate_row(model: Any, batch: int, new_tokens: int) -> Row:
    prompt = torch.randint(0, CONFIG["vocab_size"], (batch, 120))
    engine = _engine(model, 128 + new_tokens, VARIANTS["ember"])
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
    parser.add_argument(
        "--dispatch-rows", default="1,6,16,64", help="comma-separated M of the dispatch rows"
    )
    parser.add_argument("--dispatch-only", action="store_true", help="only the dispatch rows")
    args = parser.parse_args()
    batches, kvs = ([1, 4, 16, 64], [128, 512, 1024, 2048]) if args.full else ([1, 8], [512])
    batches = [int(b) for b in args.batches.split(",")] if args.batches else batches
    kvs = [int(k) for k in args.kvs.split(",")] if args.kvs else kvs
    torch.set_num_threads(2)
    ms = [int(m) for m in args.dispatch_rows.split(",")]
    dispatch = dispatch_rows(ms, args.repeat)
    print_table(dispatch, baseline="torch")
    rows = list(dispatch)
    if not args.dispatch_only:
        model = _model()
        steps = step_rows(model, batches, kvs, args.repeat)
        steps.append(generate_row(model, 1, 32))
        print_table(steps, baseline="eager")
        same = steps[-1].extra["same_tokens_as_eager"]
        print(f"generate: ember's greedy tokens equal eager's: {same}")
        rows += steps
    write_jsonl(rows, "bench-results/decode.jsonl", env=environment(), target="llvm")


if __name__ == "__main__":
    main()
