"""Expert parallelism on a torch.distributed process group (gloo on CPU, NCCL on GPUs).

`launch(fn, world_size=4)` starts ranks on loopback (or `init()` joins torchrun's group);
`compile_moe(model, tokens, chunks=...)` compiles an MoE model for this rank, with experts
placed on ranks and chunked all-to-alls overlapping computation; `choose_chunks` picks the
chunk sizes from profiled compute and communication times. Importing this package loads
neither torch nor tvm; they load on first use.
"""

from __future__ import annotations

from typing import Any

from ember.distributed.errors import DistributedError

__all__ = [
    "CostModel",
    "DistributedError",
    "choose_chunks",
    "compile_moe",
    "init",
    "launch",
]

_LAZY = {
    "init": "process_group",
    "launch": "process_group",
    "compile_moe": "compile",
    "CostModel": "cost_model",
    "choose_chunks": "cost_model",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"ember.distributed.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'ember.distributed' has no attribute {name!r}")
