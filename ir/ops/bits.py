"""Reinterpreting bits: bitcast."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ember.ir.op import Op, register_op
from ember.ir.types import DType, TensorType

__all__ = ["Bitcast"]


@register_op
@dataclass(frozen=True)
class Bitcast(Op):
    """x's bits reinterpreted as `dtype`, whose elements must have x's size (ONNX BitCast)."""

    name: ClassVar[str] = "bitcast"
    dtype: DType = DType.int32

    def infer(self, x: TensorType) -> TensorType:
        if x.dtype is DType.int4 or self.dtype is DType.int4:
            raise self.error(f"packed int4 cannot be bitcast ({x} to {self.dtype.value})")
        if x.dtype.numpy.itemsize != self.dtype.numpy.itemsize:
            raise self.error(
                f"element sizes differ: {x} is {x.dtype.numpy.itemsize} bytes, "
                f"{self.dtype.value} is {self.dtype.numpy.itemsize}"
            )
        return x.with_dtype(self.dtype)

    def reference(self, x: np.ndarray) -> np.ndarray:
        return np.require(x, requirements="C").view(self.dtype.numpy)

    def compute(self, x: Any) -> Any:
        from tvm import te, tirx

        if self.dtype is DType.bool:  # TVM's bool is one bit wide: compare instead
            return te.compute(x.shape, lambda *i: x(*i) != tirx.const(0, x.dtype), name="out")
        if x.dtype == "bool":
            return te.compute(x.shape, lambda *i: x(*i).astype(self.dtype.tvm), name="out")
        return te.compute(x.shape, lambda *i: tirx.reinterpret(self.dtype.tvm, x(*i)), name="out")
