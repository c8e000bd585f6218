"""Compile an MoE model for this rank: import with a symbolic token dim, optimize, place experts
(`partition-experts`), chunk and pipeline the all-to-alls (`pipeline-all-to-all`), build."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ember.distributed.errors import DistributedError
from ember.ir import Graph

__all__ = ["DistributedProgram", "compile_moe", "partition_graph"]

_AFTER = ("fold-constants", "eliminate-dead-code")


@dataclass(frozen=True)
class DistributedProgram:
    """This rank's compiled program: call it with this rank's tokens."""

    program: Any
    sizes: tuple[int, ...]

    @property
    def graph(self) -> Graph:
        return self.program.graph

    def __call__(self, x: Any) -> Any:
        import torch

        from ember.distributed import collectives

        try:
            (out,) = self.program.run([x.detach().contiguous()])
        except Exception as err:
            if collectives.FAILURES:  # a collective failed inside the VM: raise its error
                failure = collectives.FAILURES.pop()
                collectives.FAILURES.clear()
                raise failure from err
            raise
        return torch.from_dlpack(out)


def partition_graph(g: Graph, sizes: Sequence[int], *, rank: int, world_size: int) -> Graph:
    """The optimized graph `g` (tokens symbolic) as rank `rank`'s chunked expert-parallel graph."""
    from ember.distributed import collectives  # noqa: F401  (registers what the VM calls)
    from ember.ir import verify
    from ember.passes import run_pipeline
    from ember.passes.partition_experts import partition_experts
    from ember.passes.pipeline_all_to_all import pipeline_all_to_all

    g = verify(partition_experts(g, rank=rank, world_size=world_size))
    g = verify(pipeline_all_to_all(g, sizes=tuple(sizes)))
    return run_pipeline(g, _AFTER)[0]


def import_moe(model: Any, example: Any, token_axis: int = 1) -> Graph:
    """`model` imported with its token axis symbolic and optimized by the default pipeline."""
    from ember.frontend.torch import import_module
    from ember.passes import run_pipeline

    imported = import_module(model, (example,), dynamic={0: {token_axis: ("tokens", 2, 1 << 20)}})
    return run_pipeline(imported.graph)[0]


def compile_moe(model: Any, example: Any, *, chunks: int | Sequence[int] = 1,
                token_axis: int = 1, target: Any = "llvm") -> DistributedProgram:  # fmt: skip
    """Compile `model` (an nn.Module with MoE layers, one input whose `token_axis` holds this
    rank's tokens) for this rank of the current process group.

    `chunks`: how many equal chunks to pipeline (1: no overlap), or explicit chunk sizes (from
    `ember.distributed.choose_chunks`). Every rank must compile with the same chunks.
    """
    import torch.distributed as dist

    from ember.api import compile_graph

    if not dist.is_initialized():
        raise DistributedError(
            "compile_moe needs a process group: call ember.distributed.init() (under torchrun) "
            "or run inside ember.distributed.launch"
        )
    tokens = int(example.shape[token_axis])
    sizes = _sizes(chunks, tokens)
    _check_same_everywhere(sizes)
    g = partition_graph(
        import_moe(model, example, token_axis),
        sizes,
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
    )
    return DistributedProgram(compile_graph(g, target, passes=(), cache=False), sizes)


def _sizes(chunks: int | Sequence[int], tokens: int) -> tuple[int, ...]:
    if isinstance(chunks, int):
        if not 1 <= chunks <= tokens:
            raise DistributedError(f"chunks={chunks} must be in [1, {tokens} tokens]")
        return tuple(tokens // chunks + (i < tokens % chunks) for i in range(chunks))
    sizes = tuple(int(c) for c in chunks)
    if sum(sizes) != tokens or min(sizes) < 1:
        raise DistributedError(f"chunk sizes {sizes} must be positive and sum to {tokens} tokens")
    return sizes


def _check_same_everywhere(sizes: tuple[int, ...]) -> None:
    """Ranks with different chunks would issue mismatched collectives: refuse up front."""
    import torch.distributed as dist

    every: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(every, sizes)
    if len(set(every)) != 1:
        raise DistributedError(
            f"ranks were given different chunks {every}; every rank must compile with the same "
            "chunks (choose them on one rank and broadcast, or from a shared cost model)"
        )
