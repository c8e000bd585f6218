"""Batched kernels of a block: the block wrapped so each per-instance argument is read through a
gather index from its producer's buffer (or broadcast, when every instance passes the same
tensor, or computed in place by an inlined lookup block, see `Inline`), exported with a
symbolic `batch` dim by ember's torch frontend and built by `ember.api.compile_graph`. Module
parameters become constants of the build: passed once.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils._pytree as pytree

from ember.autobatch.errors import AutobatchError

__all__ = ["ArgKind", "ArgSpec", "Inline", "Kernel", "Kind", "arg_spec", "build_kernel"]

_MAX_ROWS = 1 << 24


class ArgKind(enum.Enum):
    """How one block argument reaches the batched kernel."""

    GATHER = "gather"  # (producer buffer [n, ...], row index [batch]): the gather is in the kernel
    BATCH = "batch"  # already a contiguous [batch, ...] tensor (ablation: gathers done outside)
    SHARED = "shared"  # the same [1, ...] tensor for every instance: broadcast in the kernel
    FIXED = "fixed"  # the same tensor for every instance, leading dim != 1: passed as is

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Inline:
    """The argument is output `slot` of `block`, a lookup block (`Block.lookup_only`), computed
    inside this kernel from that block's own arguments, which reach it as `kinds` says. The
    kernel then reads the block's tables, and fold-table-lookups folds them through its ops."""

    block: Any
    slot: int
    kinds: tuple[Kind, ...]

    def __str__(self) -> str:
        return f"{self.block.name}[{self.slot}]({', '.join(map(str, self.kinds))})"


Kind = ArgKind | Inline


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

    def __init__(self, fn: Callable[..., Any], kinds: tuple[Kind, ...]) -> None:
        super().__init__()
        self.fn = fn  # an nn.Module is registered as a submodule: its weights become constants
        self.inlined = torch.nn.ModuleList(dict.fromkeys(_inlined_modules(kinds)))  # theirs too
        self.kinds = kinds

    def run(self, flat: tuple[torch.Tensor, ...]) -> Any:
        parts = _read(self.kinds, iter(flat))
        return _apply(self.fn, self.kinds, parts, _rows(self.kinds, parts))


def _inlined_modules(kinds: tuple[Kind, ...]) -> list[torch.nn.Module]:
    found = []
    for kind in kinds:
        if isinstance(kind, Inline):
            if isinstance(kind.block.fn, torch.nn.Module):
                found.append(kind.block.fn)
            found.extend(_inlined_modules(kind.kinds))
    return found


def _read(kinds: tuple[Kind, ...], flat: Iterator[torch.Tensor]) -> list[Any]:
    """The flat inputs grouped by argument: a (buffer, index) pair for GATHER, the inlined
    block's own arguments for Inline, a tensor otherwise."""
    parts: list[Any] = []
    for kind in kinds:
        if kind is ArgKind.GATHER:
            parts.append((next(flat), next(flat)))
        elif isinstance(kind, Inline):
            parts.append(_read(kind.kinds, flat))
        else:
            parts.append(next(flat))
    return parts


def _rows(kinds: tuple[Kind, ...], parts: list[Any]) -> Any:
    """The batch size: the length of the first gathered or batched argument (None if none)."""
    for kind, part in zip(kinds, parts, strict=True):
        if kind is ArgKind.GATHER:
            return part[1].shape[0]
        if kind is ArgKind.BATCH:
            return part.shape[0]
        if isinstance(kind, Inline) and (rows := _rows(kind.kinds, part)) is not None:
            return rows
    return None


def _apply(fn: Callable[..., Any], kinds: tuple[Kind, ...], parts: list[Any], batch: Any) -> Any:
    args = []
    for kind, part in zip(kinds, parts, strict=True):
        if kind is ArgKind.GATHER:
            args.append(part[0].index_select(0, part[1]))
        elif kind is ArgKind.SHARED:
            args.append(part.expand(batch, *part.shape[1:]))
        elif isinstance(kind, Inline):
            outputs = _apply(kind.block.fn, kind.kinds, part, batch)
            args.append(pytree.tree_leaves(outputs)[kind.slot])
        else:
            args.append(part)
    return fn(*args)


def _batched(fn: Callable[..., Any], kinds: tuple[Kind, ...], count: int) -> _Batched:
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

    kinds: tuple[Kind, ...]
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
    kinds: tuple[Kind, ...],
    specs: Sequence[ArgSpec],
    examples: Sequence[torch.Tensor | None],
    flat: list[torch.Tensor],
    dynamic: dict[int, dict[int, tuple[str, int, int]]],
) -> None:
    """Append example inputs (batch 2, sources of 3 rows: size-1 dims would be specialized) to
    `flat` and their dynamic dims for the frontend to `dynamic`."""
    for kind, spec, value in zip(kinds, specs, examples, strict=True):
        if isinstance(kind, Inline):
            _inputs_for(kind.kinds, kind.block.arg_specs, kind.block.examples, flat, dynamic)
        elif kind is ArgKind.GATHER:
            dynamic[len(flat)] = {0: (f"rows{len(flat)}", 1, _MAX_ROWS)}
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


def build_kernel(
    name: str,
    fn: Callable[..., Any],
    kinds: tuple[Kind, ...],
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

    flat: list[torch.Tensor] = []
    dynamic: dict[int, dict[int, tuple[str, int, int]]] = {}
    _inputs_for(kinds, specs, examples, flat, dynamic)
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
