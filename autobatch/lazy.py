"""Lazy block results: `Call` (one recorded block call of one instance, defined in _recorder.c)
and `LazyValue` (one of its outputs). Reading a value (`.item()`, `bool()`, a torch op, ...)
forces it: inside `ab.run` the instance is suspended until the scheduler has computed it (see
runtime.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.utils._pytree as pytree

from ember.autobatch._recorder import Call, LazyBase
from ember.autobatch.arena import Buffer

__all__ = ["Call", "LazyValue", "force"]


# Set by runtime.py: makes sure a call has run (suspending the instance if it must wait).
_force_hook: list[Callable[[Call], None]] = []


class LazyValue(LazyBase):
    """`LazyValue(call, slot, spec, depth, round)`: output `slot` of a recorded block call;
    `depth` is the call's depth, or more after ghost ops padded it (see ghosts.py); `round` the
    round it was recorded in. Pass it to other blocks freely; read it and it is computed.
    (The data members live in C, see _recorder.c: recording makes thousands of these.)"""

    __slots__ = ()

    @property
    def shape(self) -> torch.Size:
        return torch.Size(self.spec.shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.spec.dtype

    # what the signature and the arenas already tell: reading it computes nothing (no flush)
    @property
    def ndim(self) -> int:
        return len(self.spec.shape)

    def dim(self) -> int:
        return len(self.spec.shape)

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return self.shape.numel()

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")  # values live in the arenas, host memory

    @property
    def ready(self) -> bool:
        return self.call.outputs is not None

    def source(self) -> tuple[Buffer, int]:
        """The buffer holding this value and its row (the value must be ready)."""
        call = self.call
        assert call.outputs is not None
        buffer, first = call.outputs[self.slot]
        return buffer, first + call.row

    def value(self) -> torch.Tensor:
        """This value as a [1, ...] torch tensor: a copy of its row (arena memory is reused once
        its buffers are gone, see arena.py)."""
        if self.call.outputs is None:
            _force_hook[0](self.call)
        buffer, row = self.source()
        return torch.from_numpy(buffer.host[row : row + 1].copy())

    def __repr__(self) -> str:
        state = "ready" if self.ready else f"pending at depth {self.depth}"
        return f"LazyValue({self.call.block.name}[{self.slot}]: {self.spec}, {state})"

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return func(*force(args), **force(kwargs or {}))

    def item(self) -> Any:
        return self.value().item()

    def tolist(self) -> Any:
        return self.value().tolist()

    def numpy(self) -> Any:
        return self.value().numpy()

    def __bool__(self) -> bool:
        return bool(self.value())

    def __float__(self) -> float:
        return float(self.value())

    def __int__(self) -> int:
        return int(self.value())

    def __index__(self) -> int:
        return self.value().__index__()

    def __len__(self) -> int:
        return self.spec.shape[0]

    def __getitem__(self, key: Any) -> Any:
        return self.value()[force(key)]

    def __getattr__(self, name: str) -> Any:
        """Other public tensor attributes and methods (`.sum()`, `.argmax()`, `.T`, ...) read
        the value. Private and dunder names are not forwarded: probing them (`hasattr(v,
        "_fields")`, copy's `__deepcopy__`) must not compute the value."""
        if name.startswith("_") or not hasattr(torch.Tensor, name):
            raise AttributeError(f"'LazyValue' object has no attribute {name!r}")
        return getattr(self.value(), name)


def _binary(name: str) -> Callable[[LazyValue, Any], Any]:
    def method(self: LazyValue, other: Any) -> Any:
        return getattr(self.value(), name)(force(other))

    method.__name__ = name
    return method


def _unary(name: str) -> Callable[[LazyValue], Any]:
    def method(self: LazyValue) -> Any:
        return getattr(self.value(), name)()

    method.__name__ = name
    return method


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or"):
    setattr(LazyValue, f"__{_name}__", _binary(f"__{_name}__"))
    setattr(LazyValue, f"__r{_name}__", _binary(f"__r{_name}__"))
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(LazyValue, f"__{_name}__", _binary(f"__{_name}__"))
for _name in ("neg", "abs", "invert"):
    setattr(LazyValue, f"__{_name}__", _unary(f"__{_name}__"))
LazyValue.__hash__ = object.__hash__  # type: ignore[method-assign]  # __eq__ above is a tensor op


def force(tree: Any) -> Any:
    """`tree` with every LazyValue replaced by its torch tensor (computing it if needed)."""
    return pytree.tree_map_only(LazyValue, LazyValue.value, tree)
