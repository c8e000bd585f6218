"""Convolutions over N-d inputs in channels-first layout: `conv` and `conv_transpose`.

Layouts: x is [N, C, *spatial]; conv weights are [M, C / groups, *kernel], conv_transpose
weights are [C, M / groups, *kernel]. `pads` is (before_0, ..., before_k, after_0, ..., after_k).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import sympy

from ember.ir.op import Op, register_op
from ember.ir.types import Dim, TensorType

__all__ = ["Conv", "ConvTranspose", "window_out_dim"]


def window_out_dim(size: Dim, kernel: int, stride: int, pad: int, dilation: int, ceil: bool) -> Dim:
    """Number of windows of `kernel` (dilated) sliding by `stride` over `size` + `pad`."""
    span = sympy.sympify(size) + pad - (kernel - 1) * dilation - 1
    out = (sympy.ceiling(span / stride) if ceil else sympy.floor(span / stride)) + 1
    return int(out) if out.is_number else out


def _strided(start: int, count: int, stride: int) -> slice:
    """`count` indices from `start`, `stride` apart."""
    return slice(start, start + (count - 1) * stride + 1, stride)


@dataclass(frozen=True)
class _Windowed(Op):
    strides: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()
    dilations: tuple[int, ...] = ()
    groups: int = 1

    def _check(self, x: TensorType, w: TensorType) -> int:
        spatial = x.rank - 2
        if spatial < 1 or w.rank != x.rank:
            raise self.error(
                f"input and weight must be [N, C, *spatial] and [M, C, *kernel]: {x}, {w}"
            )
        if (
            len(self.strides) != spatial
            or len(self.dilations) != spatial
            or len(self.pads) != 2 * spatial
        ):
            raise self.error(f"strides/dilations/pads must cover {spatial} spatial axes")
        if x.dtype != w.dtype:
            raise self.error(f"dtypes differ: {x} and {w}; insert a cast")
        if any(not isinstance(k, int) for k in w.shape):
            raise self.error(f"weight shape must be static, got {w}")
        return spatial


@register_op
@dataclass(frozen=True)
class Conv(_Windowed):
    """Cross-correlation: out[n, m, o] = sum_{c,k} x[n, g*C/G + c, o*s + k*d - pad] * w[m, c, k]."""

    name: ClassVar[str] = "conv"

    def infer(self, x: TensorType, w: TensorType) -> TensorType:
        spatial = self._check(x, w)
        if isinstance(x.shape[1], int) and x.shape[1] != w.shape[1] * self.groups:
            raise self.error(f"channels {x.shape[1]} != weight {w.shape[1]} * groups {self.groups}")
        if w.shape[0] % self.groups:
            raise self.error(f"output channels {w.shape[0]} not divisible by groups {self.groups}")
        out = [
            window_out_dim(x.shape[2 + i], w.shape[2 + i], self.strides[i],
                           self.pads[i] + self.pads[i + spatial], self.dilations[i], False)
            for i in range(spatial)
        ]  # fmt: skip
        return x.with_shape((x.shape[0], w.shape[0], *out))

    def reference(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        spatial = x.ndim - 2
        widths = [(0, 0), (0, 0)] + [(self.pads[i], self.pads[i + spatial]) for i in range(spatial)]
        xp = np.pad(x.astype(np.float64), widths)
        out_shape = self.infer(TensorType(x.shape, x.dtype), TensorType(w.shape, w.dtype)).shape
        cin, cout = w.shape[1], w.shape[0] // self.groups
        out = np.zeros(out_shape, dtype=np.float64)
        for k in itertools.product(*(range(n) for n in w.shape[2:])):
            window = tuple(
                slice(k[i] * self.dilations[i], None, self.strides[i]) for i in range(spatial)
            )
            patch = xp[(slice(None), slice(None), *window)]
            patch = patch[(slice(None), slice(None), *(slice(0, n) for n in out_shape[2:]))]
            for g in range(self.groups):
                xs = patch[:, g * cin : (g + 1) * cin]
                ws = w[g * cout : (g + 1) * cout][(slice(None), slice(None), *k)].astype(np.float64)
                out[:, g * cout : (g + 1) * cout] += np.einsum("nc...,mc->nm...", xs, ws)
        return out.astype(x.dtype)

    def compute(self, x: Any, w: Any) -> Any:
        from tvm import te, tirx

        spatial = len(x.shape) - 2
        out_shape = [x.shape[0], w.shape[0]]
        for i in range(spatial):
            span = x.shape[2 + i] + self.pads[i] + self.pads[i + spatial]
            span = span - (int(w.shape[2 + i]) - 1) * self.dilations[i] - 1
            out_shape.append(tirx.floordiv(span, self.strides[i]) + 1)
        cin = int(w.shape[1])
        cout = int(w.shape[0]) // self.groups
        rc = te.reduce_axis((0, cin), name="rc")
        rk = [te.reduce_axis((0, int(w.shape[2 + i])), name=f"rk{i}") for i in range(spatial)]
        acc = "float32" if x.dtype in ("float16", "bfloat16") else x.dtype

        def body(n: Any, m: Any, *o: Any) -> Any:
            channel = tirx.floordiv(m, cout) * cin + rc
            pos = [
                o[i] * self.strides[i] + rk[i] * self.dilations[i] - self.pads[i]
                for i in range(spatial)
            ]
            inside = tirx.all(*[tirx.all(p >= 0, p < x.shape[2 + i]) for i, p in enumerate(pos)])
            safe = [tirx.if_then_else(inside, p, 0) for p in pos]
            value = tirx.if_then_else(inside, x(n, channel, *safe), tirx.const(0, x.dtype))
            return te.sum(value.astype(acc) * w(m, rc, *rk).astype(acc), axis=[rc, *rk])

        out = te.compute(out_shape, body, name="conv")
        if acc != x.dtype:
            out = te.compute(out.shape, lambda *i: out(*i).astype(x.dtype), name="out")
        return out


@register_op
@dataclass(frozen=True)
class ConvTranspose(_Windowed):
    """The gradient of conv with respect to its input: each x[n, c, i] adds x * w[c, m, k] at
    out[n, g*M/G + m, i*s + k*d - pad]. `output_padding` extends the far end of each axis."""

    name: ClassVar[str] = "conv_transpose"
    output_padding: tuple[int, ...] = ()

    def _out_dim(self, size: Dim, kernel: int, i: int, spatial: int) -> Dim:
        extra = self.output_padding[i] if self.output_padding else 0
        full = (size - 1) * self.strides[i] + (kernel - 1) * self.dilations[i] + 1 + extra
        return full - self.pads[i] - self.pads[i + spatial]

    def infer(self, x: TensorType, w: TensorType) -> TensorType:
        spatial = self._check(x, w)
        if isinstance(x.shape[1], int) and x.shape[1] != w.shape[0]:
            raise self.error(f"input channels {x.shape[1]} != weight channels {w.shape[0]}")
        if w.shape[0] % self.groups:
            raise self.error(f"weight channels {w.shape[0]} not divisible by groups {self.groups}")
        out = [self._out_dim(x.shape[2 + i], w.shape[2 + i], i, spatial) for i in range(spatial)]
        return x.with_shape((x.shape[0], w.shape[1] * self.groups, *out))

    def reference(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        spatial = x.ndim - 2
        cin, cout = x.shape[1] // self.groups, w.shape[1]
        full = [
            (x.shape[2 + i] - 1) * self.strides[i] + (w.shape[2 + i] - 1) * self.dilations[i] + 1
            + (self.output_padding[i] if self.output_padding else 0)
            for i in range(spatial)
        ]  # fmt: skip
        out = np.zeros((x.shape[0], cout * self.groups, *full), dtype=np.float64)
        for k in itertools.product(*(range(n) for n in w.shape[2:])):
            window = tuple(
                _strided(k[i] * self.dilations[i], x.shape[2 + i], self.strides[i])
                for i in range(spatial)
            )  # fmt: skip
            for g in range(self.groups):
                xs = x[:, g * cin : (g + 1) * cin].astype(np.float64)
                ws = w[g * cin : (g + 1) * cin][(slice(None), slice(None), *k)].astype(np.float64)
                out[(slice(None), slice(g * cout, (g + 1) * cout), *window)] += np.einsum(
                    "nc...,cm->nm...", xs, ws
                )
        crop = tuple(slice(self.pads[i], full[i] - self.pads[i + spatial]) for i in range(spatial))
        return out[(slice(None), slice(None), *crop)].astype(x.dtype)

    def compute(self, x: Any, w: Any) -> Any:
        from tvm import te, tirx

        spatial = len(x.shape) - 2
        cin, cout = int(w.shape[0]) // self.groups, int(w.shape[1])
        out_shape = [x.shape[0], cout * self.groups]
        out_shape += [
            self._out_dim(x.shape[2 + i], int(w.shape[2 + i]), i, spatial) for i in range(spatial)
        ]
        rc = te.reduce_axis((0, cin), name="rc")
        rk = [te.reduce_axis((0, int(w.shape[2 + i])), name=f"rk{i}") for i in range(spatial)]
        acc = "float32" if x.dtype in ("float16", "bfloat16") else x.dtype

        def body(n: Any, m: Any, *o: Any) -> Any:
            group = tirx.floordiv(m, cout)
            channel = group * cin + rc
            num = [o[i] + self.pads[i] - rk[i] * self.dilations[i] for i in range(spatial)]
            pos = [tirx.floordiv(v, self.strides[i]) for i, v in enumerate(num)]
            conds = []
            for i, v in enumerate(num):
                conds += [v >= 0, tirx.floormod(v, self.strides[i]) == 0, pos[i] < x.shape[2 + i]]
            inside = tirx.all(*conds)
            safe = [tirx.if_then_else(inside, p, 0) for p in pos]
            value = tirx.if_then_else(inside, x(n, channel, *safe), tirx.const(0, x.dtype))
            return te.sum(
                value.astype(acc) * w(channel, tirx.floormod(m, cout), *rk).astype(acc),
                axis=[rc, *rk],
            )

        out = te.compute(out_shape, body, name="conv_transpose")
        if acc != x.dtype:
            out = te.compute(out.shape, lambda *i: out(*i).astype(x.dtype), name="out")
        return out
