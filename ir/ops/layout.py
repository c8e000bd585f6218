"""Layout ops that move data without arithmetic: `pad`; and `dim_values`, a 1-D int64 tensor
of (possibly symbolic) dimension values, which frontends use for ONNX `Shape`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import sympy

from ember.ir.op import Op, register_op
from ember.ir.types import Dim, DType, TensorType

__all__ = ["DimValues", "Pad"]

_PAD_MODES = ("constant", "reflect", "edge", "wrap")


@register_op
@dataclass(frozen=True)
class Pad(Op):
    """x padded by `pads` = (before_0, ..., before_n, after_0, ..., after_n), as in ONNX.

    Negative pads crop. `mode` is constant (fill with `value`), reflect (mirror without the
    edge), edge (repeat the edge) or wrap (periodic).
    """

    name: ClassVar[str] = "pad"
    pads: tuple[int, ...] = ()
    mode: str = "constant"
    value: float | int | bool = 0

    def infer(self, x: TensorType) -> TensorType:
        if len(self.pads) != 2 * x.rank:
            raise self.error(f"pads {list(map(str, self.pads))} needs 2 entries per axis of {x}")
        if self.mode not in _PAD_MODES:
            raise self.error(f"mode must be one of {_PAD_MODES}, got {self.mode!r}")
        shape = []
        for axis, d in enumerate(x.shape):
            size = sympy.sympify(d + self.pads[axis] + self.pads[axis + x.rank])
            if size.is_number and int(size) < 0:
                raise self.error(f"pads {list(self.pads)} crop axis {axis} of {x} below 0")
            shape.append(int(size) if size.is_number else size)
        return x.with_shape(shape)

    def reference(self, x: np.ndarray) -> np.ndarray:
        rank = x.ndim
        before = [int(p) for p in self.pads[:rank]]
        after = [int(p) for p in self.pads[rank:]]
        crop = tuple(
            slice(max(-b, 0), x.shape[i] - max(-a, 0))
            for i, (b, a) in enumerate(zip(before, after, strict=True))
        )
        x = x[crop]
        widths = [(max(b, 0), max(a, 0)) for b, a in zip(before, after, strict=True)]
        if self.mode == "constant":
            return np.pad(x, widths, mode="constant", constant_values=self.value)
        return np.pad(
            x, widths, mode={"edge": "edge", "reflect": "reflect", "wrap": "wrap"}[self.mode]
        )

    def compute(self, x: Any) -> Any:
        from tvm import te, tirx

        rank = len(x.shape)
        shape = [d + int(self.pads[i]) + int(self.pads[i + rank]) for i, d in enumerate(x.shape)]

        def source(axis: int, o: Any) -> Any:
            # crop first (negative pads), then pad the cropped axis as the mode says
            before, after = int(self.pads[axis]), int(self.pads[axis + rank])
            crop = max(-before, 0)
            n = x.shape[axis].astype("int64") - crop - max(-after, 0)
            src = o.astype("int64") - max(before, 0)
            if self.mode == "edge":
                src = tirx.max(tirx.min(src, n - 1), 0)
            elif self.mode == "wrap":
                src = tirx.floormod(src, n)
            elif self.mode == "reflect":
                folded = tirx.if_then_else(src < 0, -src, src)
                src = tirx.if_then_else(folded >= n, 2 * (n - 1) - folded, folded)
            return src + crop

        def body(*i: Any) -> Any:
            srcs = [source(axis, o) for axis, o in enumerate(i)]
            if self.mode != "constant":
                return x(*srcs)
            inside = tirx.const(True, "bool")
            for axis, s in enumerate(srcs):
                inside = tirx.all(inside, s >= 0, s < x.shape[axis].astype("int64"))
            safe = [tirx.if_then_else(inside, s, 0) for s in srcs]
            return tirx.if_then_else(inside, x(*safe), tirx.const(self.value, x.dtype))

        return te.compute(shape, body, name="out")


@register_op
@dataclass(frozen=True)
class DimValues(Op):
    """The int64 vector `values`, whose entries may be symbolic dims (ONNX Shape of a
    dynamic tensor)."""

    name: ClassVar[str] = "dim_values"
    values: tuple[Dim, ...] = ()

    def infer(self) -> TensorType:
        return TensorType((len(self.values),), DType.int64)

    def reference(self) -> np.ndarray:
        return np.array([int(v) for v in self.values], dtype=np.int64)

    def lower(self, ctx: Any, args: Any) -> Any:
        # a shape -> tensor builtin, not a TE kernel: TVM's FuseTIR drops the symbolic-dim
        # arguments (tir_vars) of a fused kernel that reads dims no input carries
        from tvm import relax

        shape = relax.ShapeExpr([ctx.dim(v) for v in self.values])
        return ctx.bb.emit(relax.op.shape_to_tensor(shape))
