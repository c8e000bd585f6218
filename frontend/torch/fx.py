"""`from_fx`: import a torch.fx GraphModule. Graphs that are not aten-level yet (symbolic_trace
output, call_module nodes) are retraced with make_fx and the same decompositions as export."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ember.frontend.torch.context import Context
from ember.frontend.torch.dtypes import to_dtype, to_numpy
from ember.frontend.torch.export import KEEP_WHOLE
from ember.frontend.torch.importer import TorchImport, _emit_outputs, convert_graph
from ember.ir import Builder, sym

__all__ = ["from_fx"]


def _is_aten(gm: torch.fx.GraphModule) -> bool:
    for node in gm.graph.nodes:
        if node.op == "call_module" or node.op == "call_method":
            return False
        if node.op in ("call_function", "placeholder") and "val" not in node.meta:
            return False
        is_op = isinstance(node.target, torch._ops.OpOverload)
        if node.op == "call_function" and not is_op and node.target.__module__ != "_operator":
            return False
    return True


def _retrace(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> torch.fx.GraphModule:
    from torch._decomp import core_aten_decompositions
    from torch.fx.experimental.proxy_tensor import make_fx

    table = {op: fn for op, fn in core_aten_decompositions().items() if op not in KEEP_WHOLE}
    with torch.no_grad():
        return make_fx(gm, decomposition_table=table)(*example_inputs)


def from_fx(
    gm: torch.fx.GraphModule, example_inputs: Sequence[Any], *, name: str | None = None
) -> TorchImport:
    """Import `gm`, called as `gm(*example_inputs)`; attributes it reads become constants."""
    from torch.utils._pytree import tree_flatten

    if not _is_aten(gm):
        gm = _retrace(gm, example_inputs)
    b = Builder(name or type(gm).__name__)
    cx = Context(b, {})
    env: dict[torch.fx.Node, Any] = {}
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            val = node.meta["val"]
            for d in val.shape:
                expr = getattr(getattr(d, "node", None), "expr", None)
                for s in getattr(expr, "free_symbols", ()):
                    cx.symbols.setdefault(s, sym(s.name))
            env[node] = b.input(tuple(cx.dim(d) for d in val.shape), to_dtype(val.dtype), node.name)
        elif node.op == "get_attr":
            env[node] = b.const(to_numpy(_attr(gm, node.target)), name=node.target)
    outputs, out_spec = tree_flatten(convert_graph(gm.graph, cx, env, b.name))
    _emit_outputs(cx, env, outputs, [""] * len(outputs))
    return TorchImport(b.build(), out_spec)


def _attr(gm: torch.nn.Module, target: str) -> torch.Tensor:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
