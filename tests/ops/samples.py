"""One sample per core op: the op, its inputs, and the PyTorch function that defines it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ember.ir import ops as O
from ember.ir.op import Op

F32 = "float32"


@dataclass(frozen=True)
class Sample:
    op: Op
    inputs: tuple[tuple[tuple[int, ...], str], ...]
    torch_fn: Callable[..., Any] | None = None
    positive: bool = False  # inputs drawn from (0.1, 2) for log/sqrt/pow domains

    @property
    def id(self) -> str:
        return str(self.op)

    def arrays(self, rng: np.random.Generator) -> list[np.ndarray]:
        out = []
        for shape, dtype in self.inputs:
            if dtype == "bool":
                out.append(rng.random(shape) < 0.5)
            elif np.dtype(dtype).kind in "iu":
                low = 1 if self.positive else -3 if np.dtype(dtype).kind == "i" else 0
                out.append(rng.integers(low, 5, shape).astype(dtype))
            elif self.positive:
                out.append(rng.uniform(0.1, 2.0, shape).astype(dtype))
            else:
                out.append(rng.uniform(-0.9, 0.9, shape).astype(dtype))
        return out


def _unary(name: str, positive: bool = False, dtype: str = F32) -> Sample:
    torch_names = {"neg": "neg", "is_nan": "isnan", "is_inf": "isinf", "logical_not": "logical_not",
                   "silu": "nn.functional.silu", "softplus": "nn.functional.softplus",
                   "softsign": "nn.functional.softsign", "relu": "relu", "bitwise_not": "bitwise_not"}  # fmt: skip
    path = torch_names.get(name, name)

    def fn(x: Any) -> Any:
        import torch

        target: Any = torch
        for part in path.split("."):
            target = getattr(target, part)
        return target(x)

    return Sample(O.UNARY_OPS[name](), (((3, 5), dtype),), fn, positive)


def _binary(name: str, torch_name: str, dtype: str = F32, positive: bool = False) -> Sample:
    def fn(x: Any, y: Any) -> Any:
        import torch

        return getattr(torch, torch_name)(x, y)

    return Sample(O.BINARY_OPS[name](), (((3, 1, 5), dtype), ((4, 1), dtype)), fn, positive)


_INT_UNARY = {"bitwise_not": "int32", "logical_not": "bool"}
_POSITIVE = {"log", "sqrt", "rsqrt", "reciprocal", "acosh", "log1p"}
_ANY_DOMAIN = {"acosh"}  # acosh needs x >= 1: checked against numpy only

SAMPLES: list[Sample] = [
    *(_unary(n, n in _POSITIVE, _INT_UNARY.get(n, F32)) for n in O.UNARY_OPS if n not in _ANY_DOMAIN),
    _binary("add", "add"), _binary("sub", "sub"), _binary("mul", "mul"), _binary("div", "div"),
    Sample(O.Div(), (((3, 5), "int32"), ((5,), "int32")),
           lambda x, y: __import__("torch").div(x, y, rounding_mode="trunc"), positive=True), _binary("pow", "pow", positive=True),
    _binary("maximum", "maximum"), _binary("minimum", "minimum"),
    _binary("floor_div", "floor_divide", positive=True), _binary("mod", "remainder", positive=True),
    _binary("fmod", "fmod", positive=True), _binary("atan2", "atan2"),
    _binary("equal", "eq", "int32"), _binary("not_equal", "ne", "int32"), _binary("less", "lt"),
    _binary("less_equal", "le"), _binary("greater", "gt"), _binary("greater_equal", "ge"),
    _binary("bitwise_and", "bitwise_and", "int32"), _binary("bitwise_or", "bitwise_or", "int32"),
    _binary("bitwise_xor", "bitwise_xor", "int32"), _binary("logical_and", "logical_and", "bool"),
    _binary("logical_or", "logical_or", "bool"), _binary("logical_xor", "logical_xor", "bool"),
    Sample(O.Cast("int32"), (((4, 3), F32),), lambda x: x.to(__import__("torch").int32)),
    Sample(O.Cast("bool"), (((4, 3), F32),), lambda x: x.bool()),
    Sample(O.Where(), (((4, 1), "bool"), ((4, 3), F32), ((3,), F32)), lambda c, x, y: __import__("torch").where(c, x, y)),
    Sample(O.Clip(-0.5, 0.25), (((4, 3), F32),), lambda x: x.clamp(-0.5, 0.25)),
    Sample(O.Gelu("none"), (((4, 3), F32),), lambda x: __import__("torch").nn.functional.gelu(x)),
    Sample(O.Gelu("tanh"), (((4, 3), F32),), lambda x: __import__("torch").nn.functional.gelu(x, approximate="tanh")),
    Sample(O.ReduceSum((1,), True), (((2, 3, 4), F32),), lambda x: x.sum(1, keepdim=True)),
    Sample(O.ReduceMean((0, 2)), (((2, 3, 4), F32),), lambda x: x.mean((0, 2))),
    Sample(O.ReduceMax((-1,)), (((2, 3, 4), F32),), lambda x: x.amax(-1)),
    Sample(O.ReduceMin(()), (((2, 3, 4), F32),), lambda x: x.amin()),
    Sample(O.ReduceProd((1,)), (((2, 3, 4), F32),), lambda x: x.prod(1)),
    Sample(O.ArgMax(1), (((2, 5, 4), F32),), lambda x: x.argmax(1)),
    Sample(O.ArgMin(-1, True), (((2, 5, 4), F32),), lambda x: x.argmin(-1, keepdim=True)),
    Sample(O.MatMul(), (((2, 1, 3, 4), F32), ((5, 4, 6), F32)), lambda x, y: x @ y),
    Sample(O.MatMul(), (((3, 4), "int32"), ((4, 2), "int32")), None),
    Sample(O.PackedMatMul(columns=5), (((2, 3, 4), F32), ((1, 4, 8), F32)),
           lambda x, p: x @ p.permute(1, 0, 2).reshape(4, 8)[:, :5]),
    Sample(O.PackedMatMul(columns=64), (((5, 8), F32), ((2, 8, 32), F32)),
           lambda x, p: x @ p.permute(1, 0, 2).reshape(8, 64)),
    Sample(O.Softmax(1), (((2, 5, 3), F32),), lambda x: x.softmax(1)),
    Sample(O.LogSoftmax(-1), (((2, 5, 3), F32),), lambda x: x.log_softmax(-1)),
    Sample(O.LayerNorm(-1, 1e-5), (((2, 3, 8), F32), ((8,), F32), ((8,), F32)),
           lambda x, w, b: __import__("torch").nn.functional.layer_norm(x, (8,), w, b, 1e-5)),
    Sample(O.Reshape((4, -1)), (((2, 3, 4), F32),), lambda x: x.reshape(4, -1)),
    Sample(O.Transpose((2, 0, 1)), (((2, 3, 4), F32),), lambda x: x.permute(2, 0, 1)),
    Sample(O.Expand((3, 2, 4)), (((2, 1), F32),), lambda x: x.expand(3, 2, 4)),
    Sample(O.Concat(1), (((2, 3), F32), ((2, 1), F32)), lambda *xs: __import__("torch").cat(xs, 1)),
    Sample(O.Split(1, (1, 3)), (((2, 4), F32),), lambda x: x.split([1, 3], 1)),
    Sample(O.Slice((0, 1), (1, 5), (3, 0), (1, -2)), (((4, 6), F32),), lambda x: x[1:3][:, [5, 3, 1]]),
    Sample(O.Gather(1), (((3, 5), F32), ((2, 2), "int64")), None),
    Sample(O.Arange(2, 11, 3, "int64"), (), lambda: __import__("torch").arange(2, 11, 3)),
    Sample(O.Full((2, 3), 1.5, F32), (), lambda: __import__("torch").full((2, 3), 1.5)),
]  # fmt: skip
