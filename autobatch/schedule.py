"""Launching one (block, depth) group as one batched kernel: classify each argument (taint:
the same tensor for every call is passed once), point the kernel at the producers' output
buffers with row indices (the gather happens inside the kernel) and at its rows of the round's
arena, run it (it writes its contiguous outputs there) and hand every call its rows."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ember.autobatch import _recorder
from ember.autobatch.arena import Arena
from ember.autobatch.errors import AutobatchError
from ember.autobatch.kernel import ArgKind, ArgSpec, Inline, Kind
from ember.autobatch.lazy import Call, LazyValue

__all__ = ["Options", "Stats", "launch"]


@dataclass(frozen=True)
class Options:
    """Which static optimizations are on (all, unless an ablation turns one off)."""

    coarsen: bool = True
    taint: bool = True
    gather: bool = True
    inline: bool = True


@dataclass
class Stats:
    """What a run did: rounds, kernel launches and how argument rows reached the kernels."""

    rounds: int = 0
    launches: int = 0
    calls: int = 0
    rows_in_place: int = 0  # read by the kernel through indices, from one producer's buffer or
    # from the batch of Python-made tensors an earlier launch uploaded (inlined lookup blocks)
    rows_staged: int = 0  # copied together by the runtime first (several buffers, gather off)
    rows_uploaded: int = 0  # per-instance tensors made by Python, stacked into a batch
    rows_inlined: int = 0  # computed inside the kernel by an inlined lookup block (Inline)
    rows_out: int = 0  # output rows copied into the arenas (per-op kernels; others write there)
    shared_args: int = 0  # arguments passed once for a whole group (taint)
    ghosts: int = 0  # values whose depth a ghost op padded
    launch_s: float = 0.0  # wall time launching groups (arguments, kernels, output copies)
    kernel_s: float = 0.0  # of which in the kernels (VM calls)


def _idx(rows: list[int]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64)  # torch's allocator aligns for TVM


def _stage(calls: list[Call], j: int, spec: ArgSpec, stats: Stats) -> torch.Tensor:
    """Copy argument j of the calls into one contiguous batch: one gather per producer buffer,
    one stack of the Python-made tensors."""
    made_all = _recorder.made(calls, j)
    if made_all is not None:  # all made by Python (TreeLSTM tokens): stacked in order
        stats.rows_uploaded += len(made_all)
        return torch.cat(made_all)
    column = [c.args[j] for c in calls]
    staged = torch.empty((len(column), *spec.shape[1:]), dtype=spec.dtype)
    by_buffer: dict[int, tuple[torch.Tensor, list[int], list[int]]] = {}
    made: list[tuple[int, torch.Tensor]] = []
    for pos, a in enumerate(column):
        if isinstance(a, LazyValue):
            buffer, row = a.source()
            entry = by_buffer.setdefault(id(buffer), (buffer, [], []))
            entry[1].append(pos)
            entry[2].append(row)
        else:
            made.append((pos, a))
    for buffer, positions, rows in by_buffer.values():
        staged.index_copy_(0, _idx(positions), buffer.torch.index_select(0, _idx(rows)))
        stats.rows_staged += len(rows)
    if made:
        staged.index_copy_(0, _idx([p for p, _ in made]), torch.cat([a for _, a in made]))
    stats.rows_uploaded += len(made)
    return staged


def _batched_arg(calls: list[Call], j: int, spec: ArgSpec, options: Options, stats: Stats,
                 arena: Arena) -> tuple[list[Any], torch.Tensor | None]:  # fmt: skip
    """The kernel inputs for argument `j` and the batch uploaded for it, if any.

    The inputs are (buffer, rows) if every call's value is in one buffer, or if the calls are
    ones an earlier launch computed (an inlined lookup block's) and it uploaded argument j (the
    TreeLSTM leaves' tokens: uploaded once, by the leaf launch); else a contiguous batch."""
    if options.gather:
        import tvm

        rows, address = arena.index(len(calls))
        buffer = _recorder.rows(calls, j, address)
        if buffer is not None:
            stats.rows_in_place += len(calls)
            return [buffer.device(), tvm.runtime.from_dlpack(rows)], None
        launch = _recorder.launched(calls, address)  # its outputs list, the calls' rows
        uploaded = None if launch is None else arena.uploads.get(id(launch), {}).get(j)
        if uploaded is not None:
            stats.rows_in_place += len(calls)
            return [uploaded, tvm.runtime.from_dlpack(rows)], None
    staged = _stage(calls, j, spec, stats)
    return ([staged, torch.arange(len(calls))] if options.gather else [staged]), staged


def launch(block: Any, calls: list[Call], options: Options, stats: Stats, arena: Arena) -> None:
    """Run `calls` (one group: same block, same depth) as one batched kernel; its outputs go to
    `arena`."""
    kinds, inputs, uploads = _arguments(block, calls, options, stats, arena)
    if not _batched(kinds):
        _batch_first_shared(kinds, inputs, len(calls), options)
    kernel = block.kernel(tuple(kinds), options.coarsen)
    n = len(calls)
    outputs = [arena.place(spec, n) for spec in block.out_specs]
    if uploads:
        arena.uploads[id(outputs)] = uploads  # the calls keep `outputs` alive: the id is theirs
    if kernel.destinations:
        inputs.extend(buffer.rows(first, n) for buffer, first in outputs)
    start = time.perf_counter()
    results = kernel(inputs)
    stats.kernel_s += time.perf_counter() - start
    if not kernel.destinations:
        for (buffer, first), result in zip(outputs, results, strict=True):
            buffer.host[first : first + n] = np.from_dlpack(result)
        stats.rows_out += n * len(outputs)
    _recorder.finish(calls, outputs)  # call i's outputs are row i of each
    stats.launches += 1
    stats.calls += len(calls)


def _arguments(block: Any, calls: list[Call], options: Options, stats: Stats,
               arena: Arena) -> tuple[list[Kind], list[Any], dict[int, torch.Tensor]]:  # fmt: skip
    """How each argument of `calls` reaches the kernel, the kernel's inputs, and the batches
    uploaded for them (by argument index)."""
    assert block.arg_specs is not None
    kinds: list[Kind] = []
    inputs: list[Any] = []
    uploads: dict[int, torch.Tensor] = {}
    inlined: list[tuple[list[Call], list[Kind], list[Any]]] = []  # producers' arguments
    for j, spec in enumerate(block.arg_specs):
        same = _recorder.same(calls, j)  # the one tensor every call passed, if so
        if same is not None and (options.taint or not spec.batchable):
            kinds.append(ArgKind.SHARED if spec.batchable else ArgKind.FIXED)
            inputs.append(same)
            stats.shared_args += 1
        elif not spec.batchable:
            raise AutobatchError(
                f"block {block.name}: argument {j} ({spec}) differs between instances but has "
                f"no leading batch dim of 1; pass per-instance tensors as [1, ...], or the same "
                f"tensor object to every call"
            )
        elif (inline := _inline(calls, j, options, stats, arena, inlined)) is not None:
            kinds.append(inline[0])
            inputs.extend(inline[1])
        else:
            kinds.append(ArgKind.GATHER if options.gather else ArgKind.BATCH)
            batched, uploaded = _batched_arg(calls, j, spec, options, stats, arena)
            inputs.extend(batched)
            if uploaded is not None:
                uploads[j] = uploaded
    return kinds, inputs, uploads


def _inline(calls: list[Call], j: int, options: Options, stats: Stats, arena: Arena,
            inlined: list[tuple[list[Call], list[Kind], list[Any]]],
            ) -> tuple[Inline, list[Any]] | None:  # fmt: skip
    """Argument j as an `Inline`, when every call's value is the same output of calls of one
    lookup block (a TreeLSTM node over two leaves): the kernel recomputes those calls from
    their own arguments, and their tables fold into its ops. `inlined` holds the arguments of
    the producers inlined so far, reused when another argument reads the same calls."""
    if not (options.inline and options.coarsen):
        return None
    first = calls[0].args[j]
    if type(first) is not LazyValue or not first.call.block.lookup_only:
        return None
    sources = _recorder.producers(calls, j)
    if sources is None:
        return None
    producer = first.call.block
    found = next(((k, x) for s, k, x in inlined if s == sources), None)  # identity, then eq
    if found is None:
        found = _arguments(producer, sources, options, stats, arena)[:2]
        inlined.append((sources, *found))
    kinds, inputs = found
    if not _batched(kinds):
        return None  # the same value for every call: gathered as usual
    stats.rows_inlined += len(calls)
    return Inline(producer, first.slot, tuple(kinds)), inputs


def _batched(kinds: list[Kind]) -> bool:
    """Whether some argument brings the batch's rows (an Inline is made only when one of its
    block's own arguments does)."""
    return any(k in (ArgKind.GATHER, ArgKind.BATCH) or isinstance(k, Inline) for k in kinds)


def _batch_first_shared(kinds: list[ArgKind], inputs: list[Any], n: int, options: Options) -> None:
    """Every argument is shared: gather the first [1, ...] one n times so the batch has n rows."""
    j = kinds.index(ArgKind.SHARED)
    pos = sum(2 if k is ArgKind.GATHER else 1 for k in kinds[:j])
    tensor = inputs[pos]
    if options.gather:
        kinds[j] = ArgKind.GATHER
        inputs[pos : pos + 1] = [tensor, torch.zeros(n, dtype=torch.int64)]
    else:
        kinds[j] = ArgKind.BATCH
        inputs[pos] = tensor.expand(n, *tensor.shape[1:]).contiguous()
