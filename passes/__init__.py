"""Graph → Graph rewrites, the pass registry and the default pipeline."""

from ember.passes import (
    async_softmax,
    canonicalize,
    eliminate_common_subexpressions,
    eliminate_dead_code,
    flat_gemm,
    fold_constants,
    fold_table_lookups,
    fuse_quantize,
    partition_experts,
    pipeline_all_to_all,
    quantize_w4a4,
    quantize_w4a16,
    quantize_w8a8,
    strength_reduce,
)
from ember.passes.pipeline import DEFAULT_PIPELINE, run_pipeline
from ember.passes.registry import PASSES, graph_pass, parse_pass_spec

__all__ = [
    "DEFAULT_PIPELINE",
    "PASSES",
    "async_softmax",
    "canonicalize",
    "eliminate_common_subexpressions",
    "eliminate_dead_code",
    "flat_gemm",
    "fold_constants",
    "fold_table_lookups",
    "fuse_quantize",
    "graph_pass",
    "parse_pass_spec",
    "partition_experts",
    "pipeline_all_to_all",
    "quantize_w4a4",
    "quantize_w4a16",
    "quantize_w8a8",
    "run_pipeline",
    "strength_reduce",
]
