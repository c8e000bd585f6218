"""Matrix products: `matmul` with numpy's batch broadcasting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ember.ir.op import Op, register_op
from ember.ir.ops._shapes import broadcast_shapes, dims_equal, is_unit
from ember.ir.types import TensorType

__all__ = ["MatMul"]


@register_op
@dataclass(frozen=True)
class MatMul(Op):
    """x @ y for rank >= 2 operands; leading (batch) dims broadcast. Frontends lift 1-D operands."""

    name: ClassVar[str] = "matmul"

    def infer(self, x: TensorType, y: TensorType) -> TensorType:
        if x.rank < 2 or y.rank < 2:
            raise self.error(f"operands must have rank >= 2, got {x} @ {y}")
        if x.dtype != y.dtype:
            raise self.error(f"dtypes differ: {x} @ {y}; insert a cast")
        if not dims_equal(x.shape[-1], y.shape[-2]):
            raise self.error(f"inner dims differ: {x} @ {y}")
        batch = broadcast_shapes(self.name, x.shape[:-2], y.shape[:-2])
        return TensorType((*batch, x.shape[-2], y.shape[-1]), x.dtype)

    def reference(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if x.dtype.kind in "iub":
            return np.matmul(x, y)
        return np.matmul(x.astype(np.float64), y.astype(np.float64)).astype(x.dtype)

    def compute(self, x: Any, y: Any) -> Any:
        from tvm import te

        rx, ry = len(x.shape), len(y.shape)
        rank = max(rx, ry)
        batch = []
        for axis in range(rank - 2):
            dx = x.shape[axis - (rank - rx)] if axis >= rank - rx else 1
            dy = y.shape[axis - (rank - ry)] if axis >= rank - ry else 1
            batch.append(dy if is_unit(dx) else dx)
        k = te.reduce_axis((0, x.shape[-1]), name="k")
        acc = "float32" if x.dtype in ("float16", "bfloat16") else x.dtype

        def index(t: Any, b: tuple[Any, ...], rows: Any, cols: Any) -> Any:
            own = b[len(b) - (len(t.shape) - 2) :] if len(t.shape) > 2 else ()
            lead = [0 if is_unit(d) else i for d, i in zip(t.shape[:-2], own, strict=True)]
            return t(*lead, rows, cols).astype(acc)

        def body(*i: Any) -> Any:
            b, row, col = i[:-2], i[-2], i[-1]
            return te.sum(index(x, b, row, k) * index(y, b, k, col), axis=k)

        out = te.compute((*batch, x.shape[-2], y.shape[-1]), body, name="matmul")
        if acc != x.dtype:
            out = te.compute(out.shape, lambda *i: out(*i).astype(x.dtype), name="out")
        return out
