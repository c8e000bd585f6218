"""`import_module`: torch.export an nn.Module or function, decompose to core ATen (keeping a few
ops whole), and import it."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import sympy
import torch

from ember.errors import EmberError, UnsupportedError
from ember.frontend.torch.importer import TorchImport, from_exported_program, mutated_targets

__all__ = ["KEEP_WHOLE", "ExportError", "decompose", "import_module"]

DynamicSpec = Mapping[int | str, Mapping[int, str | tuple[str, int, int]]]


class ExportError(EmberError):
    """torch.export could not capture the model (data-dependent control flow, odd Python)."""


def _keep_whole() -> tuple[Any, ...]:
    aten = torch.ops.aten
    return (
        aten.scaled_dot_product_attention.default,
        aten.linear.default,
        aten.layer_norm.default,
        aten.silu.default,
        aten.gelu.default,
        aten.softmax.int,
        aten.log_softmax.int,
    )


KEEP_WHOLE = _keep_whole()
"""Ops that core-ATen decomposition would break up but ember keeps: attention becomes one
matmul-softmax-matmul chain instead of torch's scale/mask/_safe_softmax soup, linear stays one
transpose+matmul (no addmm/view round trips), and layer_norm/silu/gelu/softmax map to ember ops
that codegen schedules as units. Everything else decomposes, so the converter table only needs
core ATen."""


def decompose(ep: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """Run core-ATen decompositions except for KEEP_WHOLE."""
    table = torch.export.default_decompositions()
    for op in KEEP_WHOLE:
        table.pop(op, None)
    return ep.run_decompositions(table)


def _model_name(model: Any) -> str:
    return (
        type(model).__name__
        if isinstance(model, torch.nn.Module)
        else getattr(model, "__name__", "fn")
    )


class _FunctionModule(torch.nn.Module):
    """A plain function as a module; export reads the function's own signature (input names)."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

        def forward(*args: Any) -> Any:
            return fn(*args)

        forward.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
        self.forward = forward


def _input_names(module: torch.nn.Module, count: int) -> list[str]:
    params = list(inspect.signature(module.forward).parameters.values())
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in params) or len(positional) < count:
        return [f"args_{i}" for i in range(count)]
    return positional[:count]


def _dynamic_shapes(dynamic: DynamicSpec, names: list[str], inputs: Sequence[Any]) -> list[Any]:
    """torch.export dynamic_shapes for `dynamic`: one Dim per symbol name, shared by name."""
    dims: dict[str, torch.export.Dim] = {}
    shapes: list[Any] = [None] * len(inputs)
    for key, axes in dynamic.items():
        index = names.index(key) if key in names else key
        if not isinstance(index, int) or not 0 <= index < len(inputs):
            raise EmberError(f"dynamic: no input {key!r}; inputs are {names}")
        spec = {}
        for axis, entry in axes.items():
            sym_name, lo, hi = (entry, 1, 2**20) if isinstance(entry, str) else entry
            dims.setdefault(sym_name, torch.export.Dim(sym_name, min=lo, max=hi))
            spec[axis] = dims[sym_name]
        shapes[index] = spec
    return shapes


def _export(module: torch.nn.Module, inputs: tuple[Any, ...], shapes: Any, name: str) -> Any:
    try:
        return torch.export.export(module, inputs, dynamic_shapes=shapes, strict=False)
    except Exception as err:
        msg = "\n".join(str(err).strip().splitlines()[:12]) or type(err).__name__
        hint = (
            "torch.export needs one graph for all inputs: replace data-dependent Python control "
            "flow (if tensor.item() ..., if x.sum() > 0) with torch.where or torch.cond, "
            "and make dynamic dims consistent with the code's shape checks"
        )
        raise ExportError(
            f"torch.export failed on {name}: {type(err).__name__}: {msg}\nhint: {hint}"
        ) from err


def import_module(
    model_or_fn: Any, example_inputs: Sequence[Any], dynamic: DynamicSpec | None = None
) -> TorchImport:
    """Export and import `model_or_fn(*example_inputs)`.

    `dynamic` maps an input (index or argument name) to {axis: symbol name}, e.g.
    `{0: {0: "batch", 1: ("seq", 1, 512)}}`; each name becomes a `torch.export.Dim` (range
    1..2**20 unless given as (name, min, max); shared across inputs by name) and an ember symbol
    of that name; torch.export's refined ranges go to `graph.symbol_ranges`. Use an example
    size >= 2 on dynamic axes: torch specializes size-1 dims.
    """
    name = _model_name(model_or_fn)
    module = (
        model_or_fn if isinstance(model_or_fn, torch.nn.Module) else _FunctionModule(model_or_fn)
    )
    inputs = tuple(example_inputs)
    names = _input_names(module, len(inputs))
    shapes = _dynamic_shapes(dynamic, names, inputs) if dynamic else None
    with torch.no_grad():
        ep = decompose(_export(module, inputs, shapes, name))
    mutated = mutated_targets(ep)
    if mutated:
        raise UnsupportedError(
            f"{name} updates {', '.join(mutated)} in place; an ember.compile'd model is a pure "
            f"function and would drop the update. Return the new value instead, or use "
            f"torch.compile(model, backend='ember'), which copies such updates back"
        )
    return from_exported_program(ep, name=name, symbol_names=_user_symbols(ep, dynamic, names))


def _user_symbols(ep: Any, dynamic: DynamicSpec | None, names: list[str]) -> dict[str, str]:
    """torch symbol name (s77) -> the user's Dim name, read off the user inputs' fake shapes."""
    if not dynamic:
        return {}
    placeholders = [n for n in ep.graph.nodes if n.op == "placeholder"]
    user = list(ep.graph_signature.user_inputs)
    by_name = {n.name: n for n in placeholders}
    found: dict[str, str] = {}
    for key, axes in dynamic.items():
        index = names.index(key) if key in names else key
        val = by_name[user[index]].meta["val"]
        for axis, entry in axes.items():
            expr = getattr(getattr(val.shape[axis], "node", None), "expr", None)
            if isinstance(expr, sympy.Symbol):
                found[expr.name] = entry if isinstance(entry, str) else entry[0]
    return found
