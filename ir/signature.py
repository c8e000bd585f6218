"""Checking a call's inputs against a graph's signature and binding its symbolic dims.

`Signature` is built once per compiled graph and checks each call with plain Python (sympy runs
only at construction), so the per-call cost stays in microseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import sympy

from ember.errors import InputError
from ember.ir.types import DType, TensorType

__all__ = ["Signature", "bind_symbols"]


class Signature:
    """Input names and types, plus the ranges of their symbolic dims."""

    def __init__(
        self,
        names: Sequence[str],
        types: Sequence[TensorType],
        ranges: Mapping[str, tuple[int, int | None]],
    ) -> None:
        self.names, self.types, self.ranges = tuple(names), tuple(types), dict(ranges)
        self._binders: list[tuple[int, int, str]] = []  # (input, axis, symbol) defining a symbol
        self._checks: list[tuple[int, int, object, Callable[..., int] | int]] = []
        defined: set[sympy.Symbol] = set()
        for i, t in enumerate(self.types):
            for axis, dim in enumerate(t.shape):
                if isinstance(dim, sympy.Symbol) and dim not in defined:
                    defined.add(dim)
                    self._binders.append((i, axis, dim.name))
        order = sorted(defined, key=lambda s: s.name)
        for i, t in enumerate(self.types):
            for axis, dim in enumerate(t.shape):
                if isinstance(dim, int):
                    self._checks.append((i, axis, dim, dim))
                elif (i, axis, getattr(dim, "name", None)) not in self._binders:
                    self._checks.append((i, axis, dim, sympy.lambdify(order, dim, "math")))
        self._order = [s.name for s in order]

    def bind(self, shapes: Sequence[Sequence[int]], dtypes: Sequence[DType]) -> dict[str, int]:
        """Each symbol's value for these input shapes; InputError names what is wrong."""
        if len(shapes) != len(self.types):
            expected = ", ".join(f"{n}: {t}" for n, t in zip(self.names, self.types, strict=True))
            raise InputError(
                f"expected {len(self.types)} inputs ({expected}), got {len(shapes)}; pass one array per input"
            )
        for name, t, shape, dtype in zip(self.names, self.types, shapes, dtypes, strict=True):
            if dtype != t.dtype:
                raise InputError(
                    f"input {name!r} (expected {t}): got dtype {dtype.value}; cast it to {t.dtype.value}"
                )
            if len(shape) != t.rank:
                raise InputError(
                    f"input {name!r} (expected {t}): got rank {len(shape)} shape {list(shape)}; expected rank {t.rank}"
                )
        env = {symbol: int(shapes[i][axis]) for i, axis, symbol in self._binders}
        for symbol, value in env.items():
            self._check_range(symbol, value)
        values = [env[s] for s in self._order]
        for i, axis, dim, rule in self._checks:
            expected = rule if isinstance(rule, int) else int(rule(*values))
            got = int(shapes[i][axis])
            if got != expected:
                shown = f"{dim} = {expected}" if not isinstance(rule, int) else str(expected)
                raise InputError(
                    f"input {self.names[i]!r} (expected {self.types[i]}): axis {axis} is {got} but must "
                    f"be {shown}; got shape {list(shapes[i])}"
                )
        return env

    def _check_range(self, name: str, got: int) -> None:
        lo, hi = self.ranges.get(name, (1, None))
        if got < lo or (hi is not None and got > hi):
            bound = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
            owner = next(self.names[i] for i, _, s in self._binders if s == name)
            raise InputError(
                f"input {owner!r}: dim {name}={got} violates its constraint {name} in {bound}; "
                f"recompile with a wider range (dynamic=...) or pass a conforming shape"
            )


def bind_symbols(
    names: Sequence[str],
    types: Sequence[TensorType],
    shapes: Sequence[tuple[int, ...]],
    dtypes: Sequence[DType],
    ranges: Mapping[str, tuple[int, int | None]],
) -> dict[sympy.Symbol, int]:
    """One-off check of inputs against a signature; returns each symbol's value."""
    env = Signature(names, types, ranges).bind(shapes, dtypes)
    return {sympy.Symbol(k, integer=True, positive=True): v for k, v in env.items()}
