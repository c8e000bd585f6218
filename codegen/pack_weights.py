"""matmul(x, const w) => packed_matmul(x, const pack_panels(w)), for CPU targets.

The CPU Matmul schedule streams B as [N / nr, K, nr] column panels. A weight held in the row-major
[K, N] layout (or as `transpose(w)`, PyTorch's Linear) would be copied into that layout on every
call; packing the constant here does it once, at compile time.

This is a graph rewrite that lives in codegen rather than passes/ because the layout belongs to
one target's schedule: the panel width is that target's register tile, and GPU builds keep the
plain matmul. Only weights whose N is a whole number of panels are packed, so the schedule never
pads (and copies) the packed operand.
"""

from __future__ import annotations

import numpy as np

from ember.ir import Builder, Graph, Node, Value, rewrite
from ember.ir.ops import MatMul, PackedMatMul, Transpose, pack_panels
from ember.ir.types import DType

__all__ = ["pack_matmul_weights"]


def _constant_weight(b: Builder, w: Value) -> np.ndarray | None:
    """w's value as a [K, N] array when it is a constant or the transpose of one."""
    if w.type.rank != 2 or w.type.dtype is not DType.float32:
        return None
    array = b.const_value(w)
    if array is not None:
        return array
    producer = b.producer(w)
    if producer is not None and isinstance(producer.op, Transpose):
        source = b.const_value(producer.inputs[0])
        return None if source is None else source.T
    return None


def pack_matmul_weights(g: Graph, *, panel: int, wide_panel: int | None = None) -> Graph:
    """Pack every float32 constant [K, N] matmul operand with N % panel == 0 (see module doc);
    `wide_panel` columns per panel instead when the matmul's row count is symbolic and it
    divides N (the CPU schedule's wider register tile, see cpu_matmul.py)."""
    packed: dict[Value, Value] = {}  # a weight shared by several matmuls is packed once

    def rule(b: Builder, node: Node) -> Value | None:
        if not isinstance(node.op, MatMul):
            return None
        x, w = node.inputs
        if w not in packed:
            array = _constant_weight(b, w)
            if array is None:
                return None
            columns = array.shape[1]
            wide = wide_panel is not None and not x.type.is_static and columns % wide_panel == 0
            width = wide_panel if wide else panel
            if columns % width != 0:
                return None
            packed[w] = b.const(pack_panels(array, width))
        return b.emit(PackedMatMul(columns=int(w.type.shape[-1])), x, packed[w], loc=node.loc)

    return rewrite(g, rule)
