"""matmul(x[M, K], const W[K, N]) => flat_matmul(x, pack_panels(W); dispatch): FlashDecoding++'s
flat GEMM with a heuristic dataflow, for linear layers whose M (batch x new tokens) is small.

`dispatch` maps each weight shape (N, K) to its table ((largest M, kernel), ...), profiled on the
target by `ember.codegen.flat_gemm.profile_dispatch`; the op carries the table (so the printed
IR and an exported artifact's metadata keep it) and codegen picks the kernel for the graph's M:
at build time when M is static, at run time inside the one program when it is symbolic.
Weights whose N is not a whole number of panels, and matmuls with M above `max_rows`, stay.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ember.ir import Builder, Graph, Value, rewrite
from ember.ir.ops import FlatMatMul, pack_panels
from ember.passes._match import linear_rule, linear_weight
from ember.passes.registry import graph_pass

__all__ = ["PANEL", "flat_gemm", "linear_shapes"]

PANEL = 32  # panel width of the packed weights (codegen/flat_gemm.py PANEL)
MAX_ROWS = 64  # decoding's M: batch x new tokens


def _eligible(m: object, n: int, max_rows: int) -> bool:
    return n % PANEL == 0 and (not isinstance(m, int) or m <= max_rows)


def linear_shapes(g: Graph, *, max_rows: int = MAX_ROWS) -> list[tuple[int, int]]:
    """(N, K) of every linear layer `flat_gemm` would rewrite, each once, in graph order."""
    shapes: dict[tuple[int, int], None] = {}
    for node in g.nodes:
        w = linear_weight(g, node)
        if w is None:
            continue
        rows = node.inputs[0].type.shape[:-1]
        m = math.prod(rows) if all(isinstance(d, int) for d in rows) else None
        if _eligible(m, w.shape[1], max_rows):
            shapes[(int(w.shape[1]), int(w.shape[0]))] = None
    return list(shapes)


@graph_pass("flat-gemm")
def flat_gemm(
    g: Graph,
    *,
    dispatch: Mapping[tuple[int, int], tuple[tuple[int, str], ...]] | None = None,
    max_rows: int = MAX_ROWS,
) -> Graph:
    """Rewrite each eligible linear layer (module doc); `dispatch` maps (N, K) to its table,
    shapes without one get the flat kernel for every M."""
    tables = dispatch or {}
    packed: dict[Value, Value] = {}  # a weight shared by several matmuls is packed once

    def rewrite_linear(b: Builder, x: Value, w: np.ndarray, key: Value) -> Value | None:
        k, n = w.shape
        m = x.type.shape[0]
        if not _eligible(m, n, max_rows):
            return None
        if key not in packed:
            packed[key] = b.const(pack_panels(w, PANEL))
        table = tables.get((n, k), ((0, "flat"),))
        return b.emit(FlatMatMul(columns=n, dispatch=table), x, packed[key])

    return rewrite(g, linear_rule(rewrite_linear))
