"""`fused_quantize_rows`: the op producing an activation and its dynamic quantization, in one.

    producer row y[i, :]  (rms_norm | layer_norm | silu_mul)
    for each head h:  x_h = pad(y[i, columns_h]) * m_h;  q_h, scale_h = quantize_rows(x_h)

`passes/fuse_quantize.py` rewrites producer => [gather | slice] => [pad] => `quantize_rows`
chains into it. The float activation never reaches memory: codegen's `FusedQuantize` rule
(`codegen/cpu_fused_quantize.py`) computes, in parallel over rows, a row's statistics (norms) or
its SiLU gating, then each head's row (its columns of y) in a row buffer and that row's absmax,
scales and levels. Heads are what the quantization passes emit per
activation: one per matmul with SmoothQuant's own 1 / s (W8A8 q, k, v), Atom's int4 channels
(reordered, zero-padded to whole groups) and its int8 outlier channels (W4A4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from ember.ir.op import Op, register_op
from ember.ir.ops.elementwise import BINARY_OPS, UNARY_OPS
from ember.ir.ops.nn import LayerNorm
from ember.ir.ops.quant import QuantizeRows
from ember.ir.ops.reduce import ReduceMean
from ember.ir.types import DType, TensorType

__all__ = ["FusedQuantizeRows", "QuantHead"]

PRODUCERS = {"rms_norm": 2, "layer_norm": 3, "silu_mul": 2}  # producer: its inputs
ROW_BLOCK = "fused_row"  # prefix of the heads' row blocks: codegen's rule looks for it


class QuantHead(NamedTuple):
    """One quantization of the producer's row: columns [start, start + width) (or the `width`
    indices of a columns input when `gathered`), `pad` zero columns appended, multiplied by an
    f32[width + pad] input when `multiplied`, then `quantize_rows(bits, group_size)`."""

    bits: int
    group_size: int
    start: int
    width: int
    pad: int = 0
    gathered: bool = False
    multiplied: bool = False


@register_op
@dataclass(frozen=True)
class FusedQuantizeRows(Op):
    """(producer inputs [M, K]..., per head: columns i64[width] if gathered, multiplier
    f32[width + pad] if multiplied) => per head (q u8[M, width + pad], scale f32[M, groups]).

    producer: "rms_norm" (x, gamma[K]: gamma * (x * rsqrt(mean(x * x) + eps))), "layer_norm"
    (x, weight[K], bias[K], over the last axis) or "silu_mul" (gate, up: silu(gate) * up).
    heads: `QuantHead` tuples. Outputs equal the unfused ops' (module docstring)."""

    name: ClassVar[str] = "fused_quantize_rows"
    producer: str = "rms_norm"
    eps: float = 1e-6
    heads: tuple[tuple[int, ...], ...] = ()

    @property
    def quant_heads(self) -> list[QuantHead]:
        return [QuantHead(*h) for h in self.heads]

    def infer(self, *args: TensorType) -> tuple[TensorType, ...]:
        if self.producer not in PRODUCERS:
            raise self.error(f"unknown producer {self.producer!r}; one of {list(PRODUCERS)}")
        count = PRODUCERS[self.producer]
        extra = sum(h.gathered + h.multiplied for h in self.quant_heads)
        if not self.heads or len(args) != count + extra:
            raise self.error(
                f"{self.producer} with {len(self.heads)} heads takes {count + extra} inputs, "
                f"got {len(args)}"
            )
        x = args[0]
        if x.rank != 2 or x.dtype is not DType.float32 or not isinstance(x.shape[1], int):
            raise self.error(f"expects x f32[M, K] with a static K, got {x}")
        k = x.shape[1]
        rows = x.shape[0]
        operand = tuple(x.shape) if self.producer == "silu_mul" else (k,)
        for p in args[1:count]:
            if tuple(p.shape) != operand or p.dtype is not DType.float32:
                raise self.error(f"{self.producer} operands must be f32{list(operand)}, got {p}")
        out: list[TensorType] = []
        rest = iter(args[count:])
        for h in self.quant_heads:
            if h.gathered and tuple(next(rest).shape) != (h.width,):
                raise self.error(f"head {h}: columns must be i64[{h.width}]")
            if h.gathered and self.producer == "silu_mul":
                raise self.error(f"head {h}: silu_mul takes column ranges only")
            if not h.gathered and h.start + h.width > k:
                raise self.error(f"head {h}: columns beyond K={k}")
            if h.multiplied and tuple(next(rest).shape) != (h.width + h.pad,):
                raise self.error(f"head {h}: the multiplier must be f32[{h.width + h.pad}]")
            q, scale = QuantizeRows(h.bits, h.group_size).infer(
                TensorType((rows, h.width + h.pad), DType.float32)
            )
            out += [q, scale]
        return tuple(out)

    def reference(self, *args: np.ndarray) -> tuple[np.ndarray, ...]:
        count = PRODUCERS[self.producer]
        y = self._reference_row(*args[:count])
        rest = iter(args[count:])
        out: list[np.ndarray] = []
        for h in self.quant_heads:
            columns = next(rest) if h.gathered else np.arange(h.start, h.start + h.width)
            x = np.pad(y[:, columns], ((0, 0), (0, h.pad)))
            multiplier = (next(rest),) if h.multiplied else ()
            out += QuantizeRows(h.bits, h.group_size).reference(x, *multiplier)
        return tuple(out)

    def _reference_row(self, *args: np.ndarray) -> np.ndarray:
        """The unfused ops' references, composed as the graph composes them."""
        mul = BINARY_OPS["mul"]().reference
        if self.producer == "silu_mul":
            gate, up = args
            return mul(UNARY_OPS["silu"]().reference(gate), up)
        if self.producer == "layer_norm":
            return LayerNorm(-1, self.eps).reference(*args)
        x, gamma = args
        mean = ReduceMean((1,), True).reference(mul(x, x))
        rstd = UNARY_OPS["rsqrt"]().reference(
            BINARY_OPS["add"]().reference(mean, np.float32(self.eps))
        )
        return mul(gamma, mul(x, rstd))

    def compute(self, *args: Any) -> list[Any]:
        count = PRODUCERS[self.producer]
        y = self._row_function(*args[:count])
        rest = iter(args[count:])
        out: list[Any] = []
        for index, h in enumerate(self.quant_heads):
            columns = next(rest) if h.gathered else None
            x = _select(y, args[0].shape[0], h, columns, name=f"{ROW_BLOCK}{index}")
            multiplier = (next(rest),) if h.multiplied else ()
            out += QuantizeRows(h.bits, h.group_size).compute(x, *multiplier)
        return out

    def _row_function(self, *args: Any) -> Any:
        """y(i, column) as a TE expression of the inputs and per-row statistics (blocks of
        their own). Each head evaluates it at its columns: a gathered column reads an input
        (not a block) indirectly, which TVM's region analysis needs to move it into the rows;
        so silu_mul, computed as a row block once, takes no gathered heads."""
        from tvm import te

        if self.producer == "silu_mul":  # one row for every head (slices of it)
            gate, up = args
            y = te.compute(
                gate.shape,
                lambda i, j: gate[i, j] * te.sigmoid(gate[i, j]) * up[i, j],
                name="silu_mul",
            )
            return lambda i, c: y[i, c]
        x = args[0]
        m, k = x.shape
        eps = float(np.float32(self.eps))
        kk = te.reduce_axis((0, k), name="kk")
        if self.producer == "rms_norm":
            squares = te.compute(
                (m,), lambda i: te.sum(x[i, kk] * x[i, kk], axis=kk), name="squares"
            )
            rstd = te.compute(
                (m,), lambda i: te.rsqrt(squares[i] / float(int(k)) + eps), name="rstd"
            )
            gamma = args[1]
            return lambda i, c: gamma[c] * (x[i, c] * rstd[i])
        # two passes (mean, then squared deviations): each statistic depends on the previous
        # one, the chain the schedule moves into the row loop
        weight, bias = args[1:]
        sums = te.compute((m,), lambda i: te.sum(x[i, kk], axis=kk), name="sums")
        mean = te.compute((m,), lambda i: sums[i] / float(int(k)), name="mean")
        dd = te.reduce_axis((0, k), name="dd")
        deviations = te.compute(
            (m,),
            lambda i: te.sum((x[i, dd] - mean[i]) * (x[i, dd] - mean[i]), axis=dd),
            name="deviations",
        )
        rstd = te.compute(
            (m,), lambda i: te.rsqrt(deviations[i] / float(int(k)) + eps), name="rstd"
        )
        return lambda i, c: (x[i, c] - mean[i]) * rstd[i] * weight[c] + bias[c]


def _select(y: Any, rows: Any, h: QuantHead, columns: Any, name: str) -> Any:
    """The head's input row: y at its columns (a range or gathered), zero-padded."""
    from tvm import te, tirx

    def value(i: Any, j: Any) -> Any:
        col = tirx.min(j, h.width - 1) if h.pad else j
        v = y(i, columns[col] if columns is not None else col + h.start)
        return tirx.if_then_else(j < h.width, v, tirx.const(0.0, "float32")) if h.pad else v

    return te.compute((rows, h.width + h.pad), value, name=name)
