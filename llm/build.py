"""`compile`: capture a transformers causal LM's prefill and decode steps with ember's torch
frontend, apply the decoding rewrites, and build both into an `Engine`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from ember.errors import EmberError, UnsupportedError
from ember.llm.decoder import DecoderStep, check_supported
from ember.llm.engine import Engine
from ember.llm.rewrites import apply_rewrites

__all__ = ["compile"]

log = logging.getLogger(__name__)


def _example(
    step: DecoderStep, batch: int, new: int, max_length: int, kv_heads: int, head_dim: int
) -> tuple[Any, ...]:
    """Example inputs of the step's static shapes."""
    ids = torch.zeros((batch, new), dtype=torch.int64)
    mask = torch.ones((batch, max_length + 1 if step.past else new), dtype=torch.int64)
    layers = len(step.model.model.layers) if step.past else 0
    cache = [torch.zeros(batch, kv_heads, max_length, head_dim) for _ in range(2 * layers)]
    return (ids, ids.clone(), mask, *cache)


def build_step(
    model: Any,
    *,
    past: bool,
    batch: int | None,
    new: int,
    max_length: int,
    options: dict[str, Any],
) -> Any:
    """Capture, optimize and build one step (prefill of `new` tokens, or decode) as a Program.

    `batch` None captures a symbolic batch (one program for every batch size: the flat GEMMs
    dispatch by M and the attention kernels take any batch at run time); every other dim is
    static: prefill is built per prompt bucket, and decode attends over all `max_length` cache
    slots (symbolic cache lengths are not retried since they failed in codegen; docs/llm.md).
    """
    from ember.api import compile_graph
    from ember.frontend.torch import import_module
    from ember.passes import run_pipeline

    attn = model.model.layers[0].self_attn
    kv_heads = attn.k_proj.out_features // attn.head_dim
    step = DecoderStep(model, past=past)
    # a symbolic batch is captured from batch 2: torch.export specializes size-1 dims
    inputs = _example(step, batch or 2, new, max_length, kv_heads, attn.head_dim)
    dynamic = None if batch else {i: {0: "batch"} for i in range(len(inputs))}
    graph, _ = run_pipeline(import_module(step, inputs, dynamic).graph, options["passes"])
    graph = apply_rewrites(graph, model, options)  # FlashDecoding++: flat GEMM, async softmax
    if options.get("weights") is not None:  # one packed 4-bit weight set, inputs of every step
        return options["weights"].compile(graph, options)
    return compile_graph(graph, options["target"], (), cache=options["cache"])


def _check_config(model: Any, max_length: int) -> None:
    config = model.config
    window = getattr(config, "sliding_window", None)
    windowed = window is not None and getattr(config, "use_sliding_window", True)
    if windowed and max_length > window:
        raise UnsupportedError(
            f"{type(model).__name__} uses sliding-window attention (window {window}) and "
            f"max_length={max_length} exceeds it; ember.llm does not implement the window: use "
            f"max_length <= {window}"
        )
    if max_length < 2:
        raise EmberError(f"max_length must be at least 2, got {max_length}")


def compile(
    model: Any,
    max_length: int = 256,
    *,
    target: str | dict[str, Any] = "llvm",
    flat_gemm: bool = True,
    async_softmax: bool = True,
    quantize: Any = None,
    speculative: str | None = None,
    draft_len: int = 4,
    passes: Sequence[str] | None = None,
    cache: bool | None = None,
) -> Engine:
    """Compile a transformers causal LM (Llama, Mistral, Qwen2, Mixtral) for decoding.

    Builds on first use one decode step for every batch size (a symbolic batch; one per batch
    size when quantized) and a prefill per batch size and prompt length. `flat_gemm` and
    `async_softmax` apply FlashDecoding++'s rewrites (docs/llm.md): flat-GEMM kernels picked by
    M from a table profiled once per engine, and attention with a unified max calibrated once. `quantize`
    ("w4a16", "w4a4" or an `ember.QuantConfig`) packs the linear layers' weights once into 4 bits
    shared by every step; `speculative="qspec"` (with w4a16) drafts up to `draft_len` tokens per
    round with W4A4 over those weights and verifies them with W4A16 (docs/qspec.md).
    """
    check_supported(model)
    _check_config(model, max_length)
    model = model.eval().float()
    attn = model.model.layers[0].self_attn
    options = {"target": target, "passes": passes, "cache": cache,
               "flat_gemm": flat_gemm, "async_softmax": async_softmax}  # fmt: skip
    if quantize is not None or speculative is not None:
        from ember.llm.speculative import quantized_options

        options |= quantized_options(model, quantize, speculative, draft_len)
    config = model.generation_config
    eos = config.eos_token_id if config.eos_token_id is not None else model.config.eos_token_id
    eos_ids = tuple(eos) if isinstance(eos, list | tuple) else (() if eos is None else (eos,))
    pad = config.pad_token_id if config.pad_token_id is not None else model.config.pad_token_id
    engine_class = Engine
    if speculative is not None:
        from ember.llm.speculative import SpeculativeEngine as engine_class
    return engine_class(
        model=model,
        layers=len(model.model.layers),
        kv_heads=attn.k_proj.out_features // attn.head_dim,
        head_dim=attn.head_dim,
        max_length=max_length,
        pad_token_id=(eos_ids[0] if eos_ids else 0) if pad is None else int(pad),
        eos_token_id=eos_ids,
        options=options,
    )
