"""op(const, ...) => const: nodes whose inputs are all constants run their numpy reference at
compile time (up to `max_elements` output elements, so weights are not duplicated needlessly)."""

from __future__ import annotations

import numpy as np

from ember.ir import Builder, Graph, Node, Value, rewrite
from ember.passes.registry import graph_pass


@graph_pass("fold-constants")
def fold_constants(g: Graph, *, max_elements: int = 1 << 22) -> Graph:
    def fold(b: Builder, node: Node) -> tuple[Value, ...] | None:
        arrays = [b.const_value(v) for v in node.inputs]
        if any(a is None for a in arrays) or node.op.is_symbolic:
            return None
        if not all(v.type.is_static for v in node.outputs):
            return None
        if sum(int(np.prod(v.type.shape)) for v in node.outputs) > max_elements:
            return None
        result = node.op.reference(*arrays)  # type: ignore[arg-type]
        results = result if isinstance(result, tuple) else (result,)
        return tuple(
            b.const(np.asarray(r), v.type.dtype) for r, v in zip(results, node.outputs, strict=True)
        )

    return rewrite(g, fold)
