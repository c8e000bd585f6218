"""`einsum`: a tensor contraction written in Einstein notation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ember.ir.op import Op, register_op
from ember.ir.types import Dim, TensorType

__all__ = ["Einsum"]


@register_op
@dataclass(frozen=True)
class Einsum(Op):
    """np.einsum(equation, *operands); all operands share one dtype and there is no '...'."""

    name: ClassVar[str] = "einsum"
    equation: str = ""

    def _parse(self, n: int) -> tuple[list[str], str]:
        lhs, arrow, rhs = self.equation.partition("->")
        terms = lhs.split(",")
        if len(terms) != n or "." in self.equation:
            raise self.error(
                f"equation {self.equation!r} does not fit {n} operands (no '...' support)"
            )
        if not arrow:  # implicit output: the indices used once, sorted
            letters = "".join(terms)
            rhs = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
        return terms, rhs

    def infer(self, *xs: TensorType) -> TensorType:
        terms, rhs = self._parse(len(xs))
        sizes: dict[str, Dim] = {}
        for term, x in zip(terms, xs, strict=True):
            if len(term) != x.rank or x.dtype != xs[0].dtype:
                raise self.error(f"operand {x} does not match {term!r} (or dtypes differ)")
            for c, d in zip(term, x.shape, strict=True):
                if sizes.get(c, d) != d and sizes.get(c) != 1 and d != 1:
                    raise self.error(f"index {c!r} has sizes {sizes[c]} and {d}")
                sizes[c] = d if sizes.get(c, 1) == 1 else sizes[c]
        return TensorType([sizes[c] for c in rhs], xs[0].dtype)

    def reference(self, *xs: np.ndarray) -> np.ndarray:
        floats = [x.dtype.kind == "f" or x.dtype.kind == "V" for x in xs]  # "V": ml_dtypes
        wide = [x.astype(np.float64) if f else x for x, f in zip(xs, floats, strict=True)]
        return np.asarray(np.einsum(self.equation, *wide)).astype(xs[0].dtype)

    def compute(self, *xs: Any) -> Any:
        from tvm import topi

        return topi.einsum(self.equation, *xs)
