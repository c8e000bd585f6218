"""Shape arithmetic shared by op rules: broadcasting, axis normalization, symbolic equality."""

from __future__ import annotations

from collections.abc import Sequence

import sympy

from ember.errors import ShapeError
from ember.ir.types import Dim

__all__ = ["broadcast_shapes", "dims_equal", "is_unit", "norm_axis"]


def dims_equal(a: Dim, b: Dim) -> bool:
    return a == b or sympy.simplify(sympy.sympify(a) - sympy.sympify(b)) == 0


def _broadcast_dim(a: Dim, b: Dim) -> Dim | None:
    if a == 1:
        return b
    if b == 1 or dims_equal(a, b):
        return a
    if isinstance(a, int) != isinstance(b, int):
        return None  # a symbol against a different constant: the caller's shapes disagree
    return None


def broadcast_shapes(op: str, *shapes: Sequence[Dim]) -> tuple[Dim, ...]:
    """numpy-style broadcasting over static and symbolic dims."""
    rank = max(len(s) for s in shapes)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
    out: list[Dim] = []
    for axis in range(rank):
        dim: Dim = 1
        for s in padded:
            merged = _broadcast_dim(dim, s[axis])
            if merged is None:
                listed = " and ".join(str(list(map(str, s))) for s in shapes)
                raise ShapeError(
                    f"{op}: shapes {listed} do not broadcast (axis {axis}: {dim} vs {s[axis]})"
                )
            dim = merged
        out.append(dim)
    return tuple(out)


def norm_axis(op: str, axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"{op}: axis={axis} is out of range for rank {rank}")
    return axis % max(rank, 1)


def is_unit(d: object) -> bool:
    """Whether a TIR or Python dim is the constant 1 (broadcasts)."""
    return getattr(d, "value", None) == 1 or (isinstance(d, int) and d == 1)
