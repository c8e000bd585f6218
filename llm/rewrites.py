"""FlashDecoding++'s rewrites applied to a captured step: asynchronous softmax (phi calibrated
once per engine from a prefill of random tokens through the reference interpreter) and flat GEMM (its
dispatch table profiled once per engine for the model's (N, K) shapes, static and symbolic M)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.ir import Graph

__all__ = ["CALIBRATION_TOKENS", "apply_rewrites"]

CALIBRATION_TOKENS = 32  # the prompt phi is calibrated on when the first step built is a decode


def apply_rewrites(graph: Graph, model: Any, options: dict[str, Any]) -> Graph:
    """`graph` with the rewrites `options` asks for (`async_softmax`, `flat_gemm`); what they
    measure is cached in `options` ("phi", "dispatch": {(N, K): table} for static-batch steps,
    "dispatch_symbolic" for symbolic-batch ones) for the engine's other steps, and may be
    preset there; "profile_rows" sets the M profiled."""
    if options.get("async_softmax"):
        from ember.passes.async_softmax import async_softmax

        if "phi" not in options:
            options["phi"] = calibrate(graph, model, options)
        graph = async_softmax(graph, phi=options["phi"])
    if options.get("flat_gemm") and options.get("weights") is None:  # quantized: int kernels
        from ember.codegen.flat_gemm import PROFILE_ROWS, profile_dispatch
        from ember.passes.flat_gemm import flat_gemm, linear_shapes

        # a symbolic batch (the decode step) chooses among the symbolic-M kernels at run time:
        # their own profile, kept apart from the per-M builds' tables
        symbolic = not graph.inputs[0].type.is_static
        tables = options.setdefault("dispatch_symbolic" if symbolic else "dispatch", {})
        rows = options.get("profile_rows", PROFILE_ROWS)
        for shape in linear_shapes(graph):
            if shape not in tables:
                tables[shape] = profile_dispatch(
                    *shape, target=options["target"], rows=rows, symbolic=symbolic
                )
        graph = flat_gemm(graph, dispatch=tables)
    return graph


def calibrate(graph: Graph, model: Any, options: dict[str, Any]) -> tuple[float, ...]:
    """phi per layer from the softmax inputs of a prefill of random tokens (fixed seed) run
    through ember's reference interpreter: `graph` itself when it is a prefill (inputs ids,
    positions, mask), else a prefill of CALIBRATION_TOKENS captured for it."""
    from ember.passes.async_softmax import calibrate_phi

    if len(graph.inputs) != 3:  # a decode step (it reads cache buffers too)
        graph = _prefill(model, options)
    batch, length = (int(d) for d in graph.inputs[0].type.shape)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, model.config.vocab_size, (batch, length))
    positions = np.broadcast_to(np.arange(length), (batch, length)).copy()
    return calibrate_phi(graph, [[ids, positions, np.ones((batch, length), np.int64)]])


def _prefill(model: Any, options: dict[str, Any]) -> Graph:
    import torch

    from ember.frontend.torch import import_module
    from ember.llm.decoder import DecoderStep
    from ember.passes import run_pipeline

    ids = torch.zeros((1, CALIBRATION_TOKENS), dtype=torch.int64)
    inputs = (ids, ids.clone(), torch.ones_like(ids))
    step = DecoderStep(model, past=False)
    return run_pipeline(import_module(step, inputs).graph, options["passes"])[0]
