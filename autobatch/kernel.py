"""Batched kernels of a block: the block wrapped so each per-instance argument is read through a
gather index from its producer's buffer (or broadcast, when every instance passes the same
tensor), exported with a symbolic `batch` dim by ember's torch frontend and built by
`ember.api.compile_graph`. Module parameters become constants of the build: passed once.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ember.autobatch.errors import AutobatchError

__all__ = ["ArgKind", "ArgSpec", "Kernel", "arg_spec", "build_kernel"]

_MAX_ROWS = 1 << 24


class ArgKind(enum.Enum):
    """How one block argument reaches the batched kernel."""

    GATHER = "gather"  # (producer buffer [n, ...], row index [batch]): the gather is in the kernel
    BATCH = "batch"  # already a contiguous [batch, ...] tensor (ablation: gathers done outside)
    SHARED = "shared"  # the same [1, ...] tensor for every instance: broadcast in the kernel
    FIXED = "fixed"  # the same tensor for every instance, leading dim != 1: passed as is


@dataclass(frozen=True, slots=True)
class ArgSpec:
    """The per-instance shape and dtype of one block argument or output."""

    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def batchable(self) -> bool:
        """Per-instance tensors carry a leading batch dim of 1."""
        return len(self.shape) >= 1 and self.shape[0] == 1

    def __str__(self) -> str:
        return f"{str(self.dtype).removeprefix('torch.')}{list(self.shape)}"


@functools.cache
def arg_spec(shape: tuple[int, ...], dtype: torch.dtype) -> ArgSpec:
    """The one ArgSpec object for (shape, dtype): equal specs are identical, so the signature
    check of every recorded call compares identities."""
    return ArgSpec(shape, dtype)


class _Batched(torch.nn.Module):
    """The block with its inputs gathered or broadcast to `batch` rows: what ember compiles."""

    def __init__(self, fn: Callable[..., Any], kinds: tuple[ArgKind, ...]) -> None:
        super().__init__()
        self.fn = fn  # an nn.Module is registered as a submodule: its weights become constants
        self.kinds = kinds

    def run(self, flat: tuple[torch.Tensor, ...]) -> Any:
        it = iter(flat)
        parts: list[tuple[ArgKind, Any]] = []
        for kind in self.kinds:
            parts.append((kind, (next(it), next(it)) if kind is ArgKind.GATHER else next(it)))
        batch = next(
            (p[1].shape[0] if k is ArgKind.GATHER else p.shape[0])
            for k, p in parts
            if k in (ArgKind.GATHER, ArgKind.BATCH)
        )
        args = []
        for kind, part in parts:
            if kind is ArgKind.GATHER:
                args.append(part[0].index_select(0, part[1]))
            elif kind is ArgKind.SHARED:
                args.append(part.expand(batch, *part.shape[1:]))
            else:
                args.append(part)
        return self.fn(*args)


def _batched(fn: Callable[..., Any], kinds: tuple[ArgKind, ...], count: int) -> _Batched:
    """A `_Batched` whose forward takes `count` named tensors (torch.export reads the names)."""
    names = ", ".join(f"x{i}" for i in range(count))
    scope: dict[str, Any] = {}
    exec(f"def forward(self, {names}):\n    return self.run(({names},))", scope)
    cls = type("Batched", (_Batched,), {"forward": scope["forward"]})
    return cls(fn, kinds)


@dataclass
class Kernel:
    """One compiled variant of a block: call it with the flat inputs its `kinds` describe.

    `programs` holds one ember Program for a coarsened block (TVM fuses it into a few kernels),
    or one per op when coarsening is off; `graph` is the block's whole batched graph. A
    coarsened block's program writes its outputs into destination tensors passed after the
    inputs (`destinations`); per-op programs return theirs.
    """

    kinds: tuple[ArgKind, ...]
    graph: Any
    programs: list[Any]
    _steps: list[tuple[Any, tuple[Any, ...], tuple[Any, ...]]] | None = None

    @property
    def destinations(self) -> bool:
        return self._steps is None

    def __call__(self, inputs: Sequence[Any]) -> list[Any]:
        """Run on torch or TVM tensors (then the destinations, if it takes them); returns the
        outputs as TVM tensors."""
        if self._steps is None:
            return self.programs[0].executor.run(inputs)
        env: dict[Any, Any] = dict(zip(self.graph.inputs, inputs, strict=True))
        for program, ins, produced in self._steps:
            results = program.executor.run([env[v] for v in ins])
            env.update(zip(produced, results, strict=True))
        return [env[v] for v in self.graph.outputs]


def _example(spec: ArgSpec, rows: int, value: torch.Tensor | None) -> torch.Tensor:
    if value is not None and spec.batchable:
        return value.expand(rows, *spec.shape[1:]).contiguous()
    return torch.zeros((rows, *spec.shape[1:]), dtype=spec.dtype)


def _inputs_for(
    kinds: tuple[ArgKind, ...], specs: Sequence[ArgSpec], examples: Sequence[torch.Tensor | None]
) -> tuple[list[torch.Tensor], dict[int, dict[int, tuple[str, int, int]]]]:
    """Example inputs (batch 2, sources of 3 rows: size-1 dims would be specialized) and the
    dynamic-dim spec for the frontend."""
    flat: list[torch.Tensor] = []
    dynamic: dict[int, dict[int, tuple[str, int, int]]] = {}
    for j, (kind, spec, value) in enumerate(zip(kinds, specs, examples, strict=True)):
        if kind is ArgKind.GATHER:
            dynamic[len(flat)] = {0: (f"rows{j}", 1, _MAX_ROWS)}
            flat.append(_example(spec, 3, value))
            dynamic[len(flat)] = {0: ("batch", 1, _MAX_ROWS)}
            flat.append(torch.tensor([2, 0], dtype=torch.int64))
        elif kind is ArgKind.BATCH:
            dynamic[len(flat)] = {0: ("batch", 1, _MAX_ROWS)}
            flat.append(_example(spec, 2, value))
        elif value is not None:
            flat.append(value)
        else:
            flat.append(torch.zeros(spec.shape, dtype=spec.dtype))
    return flat, dynamic


def build_kernel(
    name: str,
    fn: Callable[..., Any],
    kinds: tuple[ArgKind, ...],
    specs: Sequence[ArgSpec],
    examples: Sequence[torch.Tensor | None],
    *,
    coarsen: bool = True,
    target: Any = "llvm",
) -> Kernel:
    """Export `fn` batched as `kinds` says and build it (per op when `coarsen` is False)."""
    from ember.api import compile_graph
    from ember.errors import EmberError
    from ember.frontend.torch import import_module

    flat, dynamic = _inputs_for(kinds, specs, examples)
    try:
        imported = import_module(_batched(fn, kinds, len(flat)), flat, dynamic=dynamic)
    except EmberError as err:
        err.add_note(f"while compiling autobatch block {name} for inputs {[str(s) for s in specs]}")
        raise
    except Exception as err:  # torch.export's own failures: name the block and its inputs
        raise AutobatchError(
            f"block {name}: ember could not export it batched for per-instance inputs "
            f"{[str(s) for s in specs]}: {type(err).__name__}: {str(err).splitlines()[0]}. "
            f"A block must be a row-wise torch function of its tensors (no Python branches on "
            f"their values, no data-dependent shapes)"
        ) from err
    g = imported.graph
    for v in g.outputs:
        if not v.type.shape or str(v.type.shape[0]) != "batch":
            raise AutobatchError(
                f"block {name}: an output has batched shape {v.type} without the leading batch "
                f"dim; each output must keep the inputs' leading dim (1 per instance)"
            )
    if coarsen:
        return Kernel(kinds, g, [compile_graph(g, target, destinations=True)])
    steps = [
        (program, ins, node.outputs)
        for node in g.nodes
        for program, ins in [_compile_node(g, node, target)]
    ]
    return Kernel(kinds, g, [s[0] for s in steps], steps)


def _compile_node(g: Any, node: Any, target: Any) -> tuple[Any, tuple[Any, ...]]:
    """One op of the block as its own batched program (the no-coarsening ablation)."""
    from ember.api import compile_graph
    from ember.ir import Builder

    b = Builder(f"{g.name}_{node.op.name}")
    ins: list[Any] = []
    for v in dict.fromkeys(node.inputs):
        if v in g.consts:
            b.add_const(v, g.consts[v])
        else:
            b.inputs.append(v)
            ins.append(v)
    b.add_node(node)
    b.output(*node.outputs)
    return compile_graph(b.build(g.symbol_ranges), target), tuple(ins)
