"""Converters for the mixture-of-experts kernels in transformers: `aten._grouped_mm`,
transformers' `grouped_mm_fallback` custom op (same semantics) and `aten.histc`."""

from __future__ import annotations

from typing import Any

import torch

from ember.errors import UnsupportedError
from ember.frontend.torch.context import Context
from ember.frontend.torch.registry import converter
from ember.ir import Value
from ember.ir.ops import GroupedMm, Histc

aten = torch.ops.aten


@converter(aten._grouped_mm.default, "transformers::grouped_mm_fallback")
def _grouped_mm(
    cx: Context, x: Value, w: Value, offs: Value | None = None, bias: Value | None = None,
    out_dtype: Any = None,
) -> Value:  # fmt: skip
    """(S, K) rows @ their group's (K, N) weight; only the 2-D x, 3-D w form MoE layers use."""
    if offs is None or x.type.rank != 2 or w.type.rank != 3:
        raise UnsupportedError(f"grouped_mm of {x.type} and {w.type} (only 2-D x 3-D with offsets)")
    dtype = cx.promote(x, w)
    out = cx.emit(GroupedMm(), cx.cast(x, dtype), cx.cast(w, dtype), offs)
    if bias is not None:
        raise UnsupportedError("grouped_mm with bias")
    return cx.cast(out, cx.out_dtype())


@converter(aten.histc.default)
def _histc(cx: Context, x: Value, bins: int = 100, min: float = 0, max: float = 0) -> Value:
    if not min < max:
        raise UnsupportedError(f"histc with min={min} >= max={max} (range taken from the data)")
    return cx.emit(Histc(int(bins), float(min), float(max)), cx.cast(x, cx.out_dtype()))
