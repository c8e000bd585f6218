"""The converter table: every ONNX op type ember imports, gathered from the family modules."""

from __future__ import annotations

from ember.frontend.onnx import (
    conv,
    elementwise,
    index,
    nn,
    qlinear,
    quant,
    reduce,
    resize,
    rnn,
    shape,
    sliding,
    spectral,
)  # fmt: skip
from ember.frontend.onnx.context import Converter

__all__ = ["CONVERTERS"]


def _merge(*tables: dict[str, Converter]) -> dict[str, Converter]:
    merged: dict[str, Converter] = {}
    for table in tables:
        for name, fn in table.items():
            if name in merged:
                raise TypeError(f"ONNX op {name!r} has two converters")
            merged[name] = fn
    return merged


CONVERTERS: dict[str, Converter] = _merge(
    elementwise.CONVERTERS, shape.CONVERTERS, reduce.CONVERTERS, nn.CONVERTERS, conv.CONVERTERS,
    index.CONVERTERS, quant.CONVERTERS, resize.CONVERTERS, rnn.CONVERTERS, qlinear.CONVERTERS,
    spectral.CONVERTERS, sliding.CONVERTERS,
)  # fmt: skip
