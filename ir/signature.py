"""Binding symbolic dims to the shapes a caller passed, with clear errors for bad input."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sympy

from ember.errors import InputError
from ember.ir.types import DType, TensorType

__all__ = ["bind_symbols"]


def bind_symbols(
    names: Sequence[str],
    types: Sequence[TensorType],
    shapes: Sequence[tuple[int, ...]],
    dtypes: Sequence[DType],
    ranges: Mapping[str, tuple[int, int | None]],
) -> dict[sympy.Symbol, int]:
    """Check the call's inputs against the signature; return each symbol's value."""
    if len(shapes) != len(types):
        expected = ", ".join(f"{n}: {t}" for n, t in zip(names, types, strict=True))
        raise InputError(f"expected {len(types)} inputs ({expected}), got {len(shapes)}; pass one array per input")
    env: dict[sympy.Symbol, int] = {}
    for name, t, shape, dtype in zip(names, types, shapes, dtypes, strict=True):
        where = f"input {name!r} (expected {t})"
        if dtype != t.dtype:
            raise InputError(f"{where}: got dtype {dtype.value}; cast it to {t.dtype.value}")
        if len(shape) != t.rank:
            raise InputError(f"{where}: got rank {len(shape)} shape {list(shape)}; expected rank {t.rank}")
        for dim, got in zip(t.shape, shape, strict=True):
            if isinstance(dim, sympy.Symbol) and dim not in env:
                env[dim] = int(got)
                _check_range(where, dim.name, int(got), ranges)
    for name, t, shape in zip(names, types, shapes, strict=True):
        for axis, (dim, got) in enumerate(zip(t.shape, shape, strict=True)):
            expected = sympy.sympify(dim).subs(env)
            if not expected.free_symbols and int(expected) != got:
                rule = f"{dim} = {expected}" if dim != expected else str(expected)
                raise InputError(
                    f"input {name!r} (expected {t}): axis {axis} is {got} but must be {rule}; "
                    f"got shape {list(shape)}"
                )
    return env


def _check_range(where: str, name: str, got: int, ranges: Mapping[str, tuple[int, int | None]]) -> None:
    lo, hi = ranges.get(name, (1, None))
    if got < lo or (hi is not None and got > hi):
        bound = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise InputError(
            f"{where}: dim {name}={got} violates its constraint {name} in {bound}; "
            f"recompile with a wider range (dynamic=...) or pass a conforming shape"
        )
