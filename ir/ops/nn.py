"""Neural-network ops kept whole so codegen can schedule them well: softmax, log_softmax,
layer_norm."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ember.ir.op import Op, register_op
from ember.ir.ops._shapes import dims_equal, norm_axis
from ember.ir.types import TensorType

__all__ = ["LayerNorm", "LogSoftmax", "Softmax"]


def _float_like(op: Op, x: TensorType, axis: int) -> TensorType:
    norm_axis(op.name, axis, x.rank)
    if not x.dtype.is_float:
        raise op.error(f"input must be floating point, got {x}")
    return x


@register_op
@dataclass(frozen=True)
class Softmax(Op):
    """softmax(x) = exp(x - max) / sum(exp(x - max)) along `axis`."""

    name: ClassVar[str] = "softmax"
    axis: int = -1

    def infer(self, x: TensorType) -> TensorType:
        return _float_like(self, x, self.axis)

    def reference(self, x: np.ndarray) -> np.ndarray:
        v = x.astype(np.float64)
        e = np.exp(v - v.max(axis=self.axis, keepdims=True))
        return (e / e.sum(axis=self.axis, keepdims=True)).astype(x.dtype)

    def compute(self, x: Any) -> Any:
        from tvm import topi

        return topi.nn.softmax(x, axis=norm_axis(self.name, self.axis, len(x.shape)))


@register_op
@dataclass(frozen=True)
class LogSoftmax(Op):
    """log_softmax(x) = x - max - log(sum(exp(x - max))) along `axis`."""

    name: ClassVar[str] = "log_softmax"
    axis: int = -1

    def infer(self, x: TensorType) -> TensorType:
        return _float_like(self, x, self.axis)

    def reference(self, x: np.ndarray) -> np.ndarray:
        v = x.astype(np.float64)
        shifted = v - v.max(axis=self.axis, keepdims=True)
        return (shifted - np.log(np.exp(shifted).sum(axis=self.axis, keepdims=True))).astype(
            x.dtype
        )

    def compute(self, x: Any) -> Any:
        from tvm import topi

        return topi.nn.log_softmax(x, axis=norm_axis(self.name, self.axis, len(x.shape)))


@register_op
@dataclass(frozen=True)
class LayerNorm(Op):
    """(x - mean) / sqrt(var + eps) * weight + bias over the trailing axes from `axis` on."""

    name: ClassVar[str] = "layer_norm"
    axis: int = -1
    eps: float = 1e-5

    def infer(self, x: TensorType, weight: TensorType, bias: TensorType) -> TensorType:
        _float_like(self, x, self.axis)
        axis = norm_axis(self.name, self.axis, x.rank)
        normalized = x.shape[axis:]
        for param in (weight, bias):
            if (
                param.dtype != x.dtype
                or len(param.shape) != len(normalized)
                or not all(dims_equal(a, b) for a, b in zip(param.shape, normalized, strict=True))
            ):
                raise self.error(
                    f"weight/bias must be {x.dtype.short}{list(map(str, normalized))}, got {param}"
                )
        return x

    def reference(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
        axes = tuple(range(norm_axis(self.name, self.axis, x.ndim), x.ndim))
        v = x.astype(np.float64)
        mean = v.mean(axis=axes, keepdims=True)
        var = ((v - mean) ** 2).mean(axis=axes, keepdims=True)
        return ((v - mean) / np.sqrt(var + self.eps) * weight + bias).astype(x.dtype)

    def compute(self, x: Any, weight: Any, bias: Any) -> Any:
        from tvm import topi

        axis = norm_axis(self.name, self.axis, len(x.shape))
        return topi.nn.layer_norm(
            x, weight, bias, axis=list(range(axis, len(x.shape))), epsilon=self.eps
        )
