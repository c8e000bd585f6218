"""`block(module)`: a static piece of a dynamic model. Called inside `ab.run` it records a lazy
call (in C, see _recorder.c); called anywhere else it runs eagerly. Its per-instance signature
is fixed by the first call; its batched kernels are compiled on first use, one per way of
passing the arguments."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NoReturn

import torch
import torch.utils._pytree as pytree

from ember.autobatch import _recorder
from ember.autobatch.errors import AutobatchError
from ember.autobatch.kernel import ArgSpec, Kernel, Kind, arg_spec, build_kernel
from ember.autobatch.lazy import LazyValue
from ember.ir.ops import Gather, Reshape

__all__ = ["Block", "block"]

log = logging.getLogger(__name__)


class Block(_recorder.BlockBase):
    """A module or torch function run batched over instances (see `block`).

    Calling it is in C (`BlockBase.__call__`, see _recorder.c): outside `ab.run` it calls `fn`;
    inside it records a lazy call after checking the arguments against `arg_specs`, the
    signature its first call fixed (`_first_call`); a mismatch calls `_mismatch`."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, target: Any = "llvm"):
        if not callable(fn):
            raise AutobatchError(f"ab.block takes an nn.Module or a function, got {type(fn)}")
        self.fn = fn.eval() if isinstance(fn, torch.nn.Module) else fn
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__
        self.target = target
        self.out_tree: Any = None
        self.kernels: dict[tuple[tuple[Kind, ...], bool], Kernel] = {}
        self.examples: tuple[torch.Tensor | None, ...] = ()  # the first call's own tensors
        self._lookup_only: bool | None = None

    def __repr__(self) -> str:
        return f"ab.block({self.name})"

    def _spec_of(self, i: int, a: Any) -> ArgSpec:
        if isinstance(a, LazyValue):
            return a.spec
        if isinstance(a, torch.Tensor):
            return arg_spec(tuple(a.shape), a.dtype)
        raise AutobatchError(
            f"block {self.name}: argument {i} is a {type(a).__name__}; blocks take tensors only "
            f"(make Python values tensors, or close over them in the module)"
        )

    def _first_call(self, args: tuple[Any, ...]) -> None:
        """Fix the signature: run the block eagerly once on zeros/this call's concrete tensors to
        learn its outputs and to report misuse with the block's name."""
        specs = tuple(self._spec_of(i, a) for i, a in enumerate(args))
        examples = tuple(None if isinstance(a, LazyValue) else a for a in args)
        probe = [
            torch.zeros(s.shape, dtype=s.dtype) if e is None else e
            for s, e in zip(specs, examples, strict=True)
        ]
        try:
            with torch.no_grad():
                out = self.fn(*probe)
        except Exception as err:
            raise AutobatchError(
                f"block {self.name} failed on its first call with arguments "
                f"{[str(s) for s in specs]}: {type(err).__name__}: {err}"
            ) from err
        leaves, tree = pytree.tree_flatten(out)
        bad = [type(x).__name__ for x in leaves if not isinstance(x, torch.Tensor)]
        if bad or not leaves:
            raise AutobatchError(
                f"block {self.name} returned {type(out).__name__} holding {bad or 'no tensors'}; "
                f"a block must return a tensor or a tuple of tensors"
            )
        self.out_specs = tuple(arg_spec(tuple(x.shape), x.dtype) for x in leaves)
        if not all(s.batchable for s in self.out_specs):
            raise AutobatchError(
                f"block {self.name} returned {[str(s) for s in self.out_specs]}; each output "
                f"must have a leading batch dim of 1 (one instance's row)"
            )
        if not any(s.batchable for s in specs):
            raise AutobatchError(
                f"block {self.name}: no argument has a leading batch dim of 1 "
                f"({[str(s) for s in specs]}); per-instance tensors must be [1, ...]"
            )
        self.arg_specs, self.out_tree, self.examples = specs, tree, examples
        if isinstance(out, torch.Tensor):
            self.out_form = _recorder.FORM_TENSOR
        elif type(out) is tuple and all(isinstance(x, torch.Tensor) for x in out):
            self.out_form = _recorder.FORM_TUPLE

    def _mismatch(self, args: tuple[Any, ...]) -> NoReturn:
        """Raise the error naming how `args` differ from the signature."""
        assert self.arg_specs is not None
        specs = tuple(self._spec_of(i, a) for i, a in enumerate(args))
        expected = [str(s) for s in self.arg_specs]
        if len(specs) != len(self.arg_specs):
            raise AutobatchError(
                f"block {self.name} called with {len(specs)} arguments, but its first call had "
                f"{len(self.arg_specs)} ({expected})"
            )
        for i, (got, want) in enumerate(zip(specs, self.arg_specs, strict=True)):
            if got != want:
                raise AutobatchError(
                    f"block {self.name}: argument {i} is {got} but the block was first called "
                    f"with {want}; a block keeps one per-instance signature (make one block per "
                    f"shape)"
                )
        raise AutobatchError(
            f"block {self.name} called with {list(map(str, specs))}, not {expected}"
        )

    def kernel(self, kinds: tuple[Kind, ...], coarsen: bool) -> Kernel:
        """The batched kernel for this way of passing the arguments (compiled once)."""
        key = (kinds, coarsen)
        found = self.kernels.get(key)
        if found is None:
            assert self.arg_specs is not None
            log.info("compiling block %s for %s", self.name, [str(k) for k in kinds])
            found = build_kernel(self.name, self.fn, kinds, self.arg_specs, self.examples,
                                 coarsen=coarsen, target=self.target)  # fmt: skip
            self.kernels[key] = found
        return found

    @property
    def lookup_only(self) -> bool:
        """Whether the block's compiled kernel only looks rows up (its optimized graph is all
        gathers and reshapes, as when fold-table-lookups has folded an embedding and the
        row-wise ops after it into tables). Such a block is computed again inside the kernels
        of the blocks reading its outputs (`kernel.Inline`): that costs the same row copies,
        and there its tables fold through the reader's ops (a Linear over them becomes more
        lookups). Known once the block has a coarsened kernel; False before."""
        if self._lookup_only is None:
            built = [k for (_, coarsen), k in self.kernels.items() if coarsen]
            if not built:
                return False
            nodes = built[0].programs[0].graph.nodes
            self._lookup_only = all(isinstance(n.op, Gather | Reshape) for n in nodes)
        return self._lookup_only

    def _unflatten(self, values: tuple[LazyValue, ...]) -> Any:
        """A call's outputs in the (nested) structure the block returns."""
        return pytree.tree_unflatten(list(values), self.out_tree)


def block(fn: Callable[..., Any], *, name: str | None = None, target: Any = "llvm") -> Block:
    """Make `fn` (an nn.Module or torch function of [1, ...] tensors, row-wise) a static block:
    inside `ab.run` its calls are recorded and run batched by ember-compiled kernels."""
    return Block(fn, name=name, target=target)
