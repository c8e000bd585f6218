"""Mixture-of-experts ops: `grouped_mm` (rows multiplied by their group's weight, groups given
by cumulative offsets) and `histc` (a fixed-bin histogram, used to count tokens per expert)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ember.ir.op import Op, register_op
from ember.ir.ops._shapes import dims_equal
from ember.ir.types import TensorType

__all__ = ["GroupedMm", "Histc", "group_index"]


@register_op
@dataclass(frozen=True)
class GroupedMm(Op):
    """out[i] = x[i] @ w[g(i)] with g(i) = #{e : offsets[e] <= i}, the group row i falls in.

    x is (S, K), w is (E, K, N), offsets (E,) are the inclusive cumulative group sizes (the
    end row of each group). Rows at or past offsets[E-1] belong to no group and are zero.
    """

    name: ClassVar[str] = "grouped_mm"

    def infer(self, x: TensorType, w: TensorType, offsets: TensorType) -> TensorType:
        if x.rank != 2 or w.rank != 3 or offsets.rank != 1:
            raise self.error(f"expects x (S,K), w (E,K,N), offsets (E,); got {x}, {w}, {offsets}")
        if x.dtype != w.dtype or not x.dtype.is_float:
            raise self.error(f"x and w must share a float dtype, got {x} and {w}")
        if not offsets.dtype.is_int:
            raise self.error(f"offsets must be integers, got {offsets}")
        if not dims_equal(x.shape[1], w.shape[1]) or not dims_equal(offsets.shape[0], w.shape[0]):
            raise self.error(f"shapes disagree: x {x}, w {w}, offsets {offsets}")
        return TensorType((x.shape[0], w.shape[2]), x.dtype)

    def reference(self, x: np.ndarray, w: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        out = np.zeros((x.shape[0], w.shape[2]), dtype=np.float64)
        start = 0
        for e, end in enumerate(offsets.astype(np.int64)):
            end = min(int(end), x.shape[0])
            if end > start:
                out[start:end] = x[start:end].astype(np.float64) @ w[e].astype(np.float64)
            start = max(start, end)
        return out.astype(x.dtype)

    def lower(self, ctx: Any, args: Any) -> Any:
        """float32 on CPU: the row-GEMM kernel (codegen/row_gemm.py) on each row's group;
        otherwise `compute`, scheduled like any kernel."""
        from tvm import relax
        from tvm.target import Target

        x, w, offsets = args
        if Target.current().kind.name != "llvm" or ctx.node.inputs[0].type.dtype.tvm != "float32":
            return super().lower(ctx, args)
        group = ctx.bb.emit_te(group_index, x, offsets, primfunc_name_hint="group_index")
        experts, k, f = (int(d) for d in ctx.node.inputs[1].type.shape)
        (kernel,) = ctx.kernels("row_gemm", experts, k, f)
        out = relax.TensorType(ctx.shape(0), "float32")
        return ctx.bb.emit(relax.call_tir(kernel, [x, w, group], out))

    def compute(self, x: Any, w: Any, offsets: Any) -> Any:
        from tvm import te, tirx

        groups = w.shape[0]
        group = group_index(x, offsets)
        k = te.reduce_axis((0, x.shape[1]), name="k")
        acc = "float32" if x.dtype in ("float16", "bfloat16") else x.dtype

        last = tirx.Cast("int64", groups) - 1

        def body(i: Any, n: Any) -> Any:
            g = group[i]
            product = x[i, k].astype(acc) * w[tirx.min(g, last), k, n].astype(acc)
            return te.sum(tirx.Select(g <= last, product, tirx.const(0, acc)), axis=k)

        out = te.compute((x.shape[0], w.shape[2]), body, name="grouped_mm")
        if acc != x.dtype:
            out = te.compute(out.shape, lambda *i: out(*i).astype(x.dtype), name="out")
        return out


def group_index(x: Any, offsets: Any) -> Any:
    """TE: the group of each row of x, #{e : offsets[e] <= i} (len(offsets): past the last)."""
    from tvm import te, tirx

    e = te.reduce_axis((0, offsets.shape[0]), name="e")
    one, zero = tirx.const(1, "int64"), tirx.const(0, "int64")
    return te.compute(
        (x.shape[0],),
        lambda i: te.sum(
            tirx.Select(offsets[e].astype("int64") <= i.astype("int64"), one, zero), axis=e
        ),
        name="group",
    )


@register_op
@dataclass(frozen=True)
class Histc(Op):
    """Counts of x's elements in `bins` equal-width bins over [min, max] (torch.histc).

    Element v lands in bin floor((v - min) * bins / (max - min)), v == max in the last bin;
    elements outside [min, max] (and NaN) are not counted. The result has x's dtype.
    """

    name: ClassVar[str] = "histc"
    bins: int = 100
    min: float = 0.0
    max: float = 0.0

    def infer(self, x: TensorType) -> TensorType:
        if not x.dtype.is_float:
            raise self.error(f"input must be floating point, got {x}")
        if self.bins < 1 or not self.min < self.max:
            raise self.error(
                f"needs bins >= 1 and min < max, got bins={self.bins}, "
                f"min={self.min}, max={self.max} "
                "(min == max, which takes the data's range, is not supported)"
            )
        return TensorType((self.bins,), x.dtype)

    def reference(self, x: np.ndarray) -> np.ndarray:
        v = x.astype(np.float64).ravel()
        v = v[(v >= self.min) & (v <= self.max)]
        pos = np.floor((v - self.min) * self.bins / (self.max - self.min)).astype(np.int64)
        pos = np.minimum(pos, self.bins - 1)
        return np.bincount(pos, minlength=self.bins).astype(x.dtype)

    def compute(self, x: Any) -> Any:
        from tvm import te, tirx, topi

        size = x.shape[0]
        for d in x.shape[1:]:
            size = size * d
        flat = topi.reshape(x, (size,)) if len(x.shape) != 1 else x
        r = te.reduce_axis((0, flat.shape[0]), name="r")
        lo, hi = tirx.const(self.min, "float64"), tirx.const(self.max, "float64")
        width = tirx.const(self.bins / (self.max - self.min), "float64")

        def body(b: Any) -> Any:
            v = flat[r].astype("float64")
            pos = tirx.min(tirx.floor((v - lo) * width).astype("int64"), self.bins - 1)
            hit = tirx.all(v >= lo, v <= hi, pos == b.astype("int64"))
            return te.sum(tirx.Select(hit, tirx.const(1, x.dtype), tirx.const(0, x.dtype)), axis=r)

        return te.compute((self.bins,), body, name="histc")
