"""Check a call's arrays against an exported model's signature before they reach the VM.

The runtime has no sympy: input dims are ints or plain symbol names (codegen refuses computed
input dims), so binding is a dict lookup. Messages match `ember.ir.bind_symbols`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ember.errors import InputError
from ember.runtime.metadata import TensorSpec

__all__ = ["FILL_MODES", "check_inputs", "make_inputs"]

FILL_MODES = ("random", "zeros", "ones")


def check_inputs(
    specs: Sequence[TensorSpec],
    arrays: Sequence[np.ndarray],
    ranges: Mapping[str, tuple[int, int | None]],
) -> dict[str, int]:
    """Raise InputError unless `arrays` fit `specs`; returns each symbol's value."""
    if len(arrays) != len(specs):
        expected = ", ".join(str(s) for s in specs)
        raise InputError(
            f"expected {len(specs)} inputs ({expected}), got {len(arrays)}; "
            f"pass one array per input"
        )
    env: dict[str, int] = {}
    for spec, array in zip(specs, arrays, strict=True):
        where = f"input {spec.name!r} (expected {spec.dtype}[{','.join(map(str, spec.shape))}])"
        if array.dtype.name != spec.dtype:
            raise InputError(f"{where}: got dtype {array.dtype.name}; cast it to {spec.dtype}")
        if array.ndim != len(spec.shape):
            raise InputError(
                f"{where}: got rank {array.ndim} shape {list(array.shape)}; "
                f"expected rank {len(spec.shape)}"
            )
        for axis, (dim, got) in enumerate(zip(spec.shape, array.shape, strict=True)):
            if isinstance(dim, str) and dim not in env:
                env[dim] = got
                _check_range(where, dim, got, ranges)
            expected = env[dim] if isinstance(dim, str) else dim
            if got != expected:
                rule = f"{dim} = {expected}" if isinstance(dim, str) else str(expected)
                raise InputError(
                    f"{where}: axis {axis} is {got} but must be {rule}; "
                    f"got shape {list(array.shape)}"
                )
    return env


def _check_range(
    where: str, name: str, got: int, ranges: Mapping[str, tuple[int, int | None]]
) -> None:
    lo, hi = ranges.get(name, (1, None))
    if got < lo or (hi is not None and got > hi):
        bound = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise InputError(
            f"{where}: dim {name}={got} violates its constraint {name} in {bound}; "
            f"re-export with a wider range or pass a conforming shape"
        )


def make_inputs(
    specs: Sequence[TensorSpec],
    ranges: Mapping[str, tuple[int, int | None]],
    fill_mode: str,
    seed: int = 0,
) -> list[np.ndarray]:
    """Arrays fitting `specs`, each symbolic dim at the low end of its range (default 1).

    `random` draws floats from N(0, 1), integers from [0, 8) (small: they are often indices)
    and booleans uniformly.
    """
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in specs:
        shape = tuple(d if isinstance(d, int) else ranges.get(d, (1, None))[0] for d in spec.shape)
        dtype = np.dtype(spec.dtype)
        if fill_mode != "random":
            arrays.append(np.full(shape, 0 if fill_mode == "zeros" else 1, dtype=dtype))
        elif dtype.kind == "f":
            arrays.append(rng.standard_normal(shape).astype(dtype))
        elif dtype.kind == "b":
            arrays.append(rng.integers(0, 2, shape).astype(dtype))
        else:
            arrays.append(rng.integers(0, 8, shape).astype(dtype))
    return arrays
