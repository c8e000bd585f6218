"""FlashDecoding++'s rewrites applied to a captured step: asynchronous softmax (phi calibrated
once per engine from a sample prefill through the reference interpreter) and flat GEMM (its
dispatch table profiled once per engine for the model's (N, K) shapes)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.ir import Graph

__all__ = ["CALIBRATION_TOKENS", "apply_rewrites"]

CALIBRATION_TOKENS = 32  # the sample prompt phi is calibrated on (random token ids, fixed seed)


def apply_rewrites(graph: Graph, model: Any, options: dict[str, Any]) -> Graph:
    """`graph` with the rewrites `options` asks for (`async_softmax`, `flat_gemm`); what they
    measure is cached in `options` ("phi", "dispatch": {(N, K): table}) for the engine's other
    steps, and may be preset there; "profile_rows" sets the M profiled."""
    if options.get("async_softmax"):
        from ember.passes.async_softmax import async_softmax

        if "phi" not in options:
            options["phi"] = calibrate(model, options)
        graph = async_softmax(graph, phi=options["phi"])
    if options.get("flat_gemm") and options.get("weights") is None:  # quantized: int kernels
        from ember.codegen.flat_gemm import PROFILE_ROWS, profile_dispatch
        from ember.passes.flat_gemm import flat_gemm, linear_shapes

        tables = options.setdefault("dispatch", {})
        rows = options.get("profile_rows", PROFILE_ROWS)
        for shape in linear_shapes(graph):
            if shape not in tables:
                tables[shape] = profile_dispatch(*shape, target=options["target"], rows=rows)
        graph = flat_gemm(graph, dispatch=tables)
    return graph


def calibrate(model: Any, options: dict[str, Any]) -> tuple[float, ...]:
    """phi per layer from the softmax inputs of a prefill of CALIBRATION_TOKENS random tokens,
    run through ember's reference interpreter."""
    import torch

    from ember.frontend.torch import import_module
    from ember.llm.decoder import DecoderStep
    from ember.passes import run_pipeline
    from ember.passes.async_softmax import calibrate_phi

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (1, CALIBRATION_TOKENS), generator=generator)
    mask = torch.ones_like(ids)
    inputs = (ids, mask.cumsum(-1) - 1, mask)
    graph, _ = run_pipeline(import_module(DecoderStep(model, past=False), inputs).graph,
                            options["passes"])  # fmt: skip
    return calibrate_phi(graph, [[np.asarray(t) for t in inputs]])
