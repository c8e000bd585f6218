"""Walks an exported (aten-level) fx graph and builds an ember Graph: placeholders become inputs
or constants, each call goes through the converter table, and every op without a converter is
collected into one `UnsupportedError`."""

from __future__ import annotations

import operator
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sympy
import torch
from torch.export.graph_signature import InputKind, OutputKind

from ember.errors import EmberError, UnsupportedError
from ember.frontend.torch import (  # noqa: F401  (each module fills the converter table)
    creation,
    elementwise,
    index,
    linalg,
    moe,
    nn,
    reduce,
    shape,
)
from ember.frontend.torch.context import Context
from ember.frontend.torch.dtypes import to_dtype, to_numpy
from ember.frontend.torch.registry import lookup, op_name
from ember.ir import Builder, Graph, Loc, Value, sym

__all__ = ["TorchImport", "convert_graph", "from_exported_program"]


@dataclass(frozen=True)
class TorchImport:
    """An imported model: the graph, and the pytree specs of the eager inputs and outputs.

    Rebuild the eager output from the graph's flat outputs with
    `torch.utils._pytree.tree_unflatten(flat, out_spec)`.
    """

    graph: Graph
    out_spec: Any
    in_spec: Any = None


_MISSING = object()
_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


def source_loc(node: torch.fx.Node) -> Loc | None:
    """file:line of the innermost stack frame outside torch itself (the model's own code)."""
    found = _FRAME.findall(node.meta.get("stack_trace") or "")
    outside = [f for f in found if f"{os.sep}torch{os.sep}" not in f[0]]
    if not (outside or found):
        return None
    path, line = (outside or found)[-1]
    return Loc(f"{os.path.basename(path)}:{line}")


@dataclass
class _Unsupported:
    """Every op we could not convert: name -> [count, first location, reason]."""

    seen: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, name: str, loc: Loc | None, reason: str = "") -> None:
        entry = self.seen.setdefault(name, [0, loc, reason])
        entry[0] += 1

    def check(self, model: str) -> None:
        if not self.seen:
            return
        width = max(len(n) for n in self.seen)
        lines = [f"{len(self.seen)} PyTorch ops have no converter (model: {model})"]
        for name, (count, loc, reason) in self.seen.items():
            where = f"  first at {loc}" if loc else ""
            why = f"  ({reason})" if reason else ""
            lines.append(f"  {name:<{width}} x{count}{where}{why}")
        lines.append(
            "Add a converter in ember/frontend/torch/<family>.py (see registry.converter)."
        )
        raise UnsupportedError("\n".join(lines))


def _map_args(env: Mapping[torch.fx.Node, Any], args: Any) -> Any:
    if isinstance(args, torch.fx.Node):
        return env[args]
    if isinstance(args, list | tuple):
        return type(args)(_map_args(env, a) for a in args)
    if isinstance(args, dict):
        return {k: _map_args(env, v) for k, v in args.items()}
    return args


def _contains_missing(args: Any) -> bool:
    if args is _MISSING:
        return True
    if isinstance(args, list | tuple):
        return any(_contains_missing(a) for a in args)
    if isinstance(args, dict):
        return any(_contains_missing(a) for a in args.values())
    return False


def _is_symbolic(val: Any) -> bool:
    return isinstance(val, torch.SymInt | torch.SymFloat | torch.SymBool | int | float | bool)


def convert_graph(
    graph: torch.fx.Graph,
    cx: Context,
    env: dict[torch.fx.Node, Any],
    model: str,
) -> Any:
    """Convert every call in `graph` (placeholders already in `env`); returns the output node's
    argument (a pytree of fx nodes)."""
    unsupported = _Unsupported()
    outputs: Any = None
    for node in graph.nodes:
        if node.op == "output":
            outputs = node.args[0]
            continue
        if node.op != "call_function":
            continue
        env[node] = _convert_node(node, cx, env, unsupported)
    unsupported.check(model)
    return outputs


def _convert_node(node: torch.fx.Node, cx: Context, env: dict, unsupported: _Unsupported) -> Any:
    val = node.meta.get("val")
    if node.target is not operator.getitem and _is_symbolic(val):
        return cx.dim(val) if not isinstance(val, torch.SymBool | bool) else _MISSING
    fn = lookup(node.target)
    loc = source_loc(node)
    if fn is None:
        unsupported.add(op_name(node.target), loc)
        return _MISSING
    args, kwargs = _map_args(env, node.args), _map_args(env, node.kwargs)
    if _contains_missing(args) or _contains_missing(kwargs):
        return _MISSING
    cx.node, cx.loc = node, loc
    try:
        return fn(cx, *args, **kwargs)
    except UnsupportedError as err:
        unsupported.add(op_name(node.target), loc, str(err))
        return _MISSING
    except EmberError as err:
        err.add_note(f"while converting {node.format_node()} at {loc}")
        raise


def _symbol_map(ep: Any, names: Mapping[str, str]) -> dict[sympy.Symbol, sympy.Symbol]:
    found: dict[sympy.Symbol, sympy.Symbol] = {}
    for s in ep.range_constraints:
        if isinstance(s, sympy.Symbol):
            found[s] = sym(names.get(s.name, s.name))
    return found


def _symbol_ranges(ep: Any, symbols: Mapping[sympy.Symbol, sympy.Symbol]) -> dict[str, Any]:
    ranges: dict[str, tuple[int, int | None]] = {}
    for s, vr in ep.range_constraints.items():
        if s in symbols:
            upper = vr.upper
            # torch's int_oo claims is_finite; only a true integer is a bound
            hi = int(upper) if isinstance(upper, int | sympy.Integer) else None
            ranges[symbols[s].name] = (max(int(vr.lower), 1), hi)
    return ranges


def _placeholders(ep: Any, cx: Context, env: dict[torch.fx.Node, Any]) -> list[str]:
    specs = {s.arg.name: s for s in ep.graph_signature.input_specs if hasattr(s.arg, "name")}
    user: list[str] = []
    for node in ep.graph.nodes:
        if node.op != "placeholder":
            continue
        spec = specs[node.name]
        val = node.meta.get("val")
        if spec.kind is InputKind.USER_INPUT:
            if not isinstance(val, torch.Tensor):
                raise UnsupportedError(
                    f"input {node.name!r} is a {type(val).__name__}; pass tensors"
                )
            shape = tuple(cx.dim(d) for d in val.shape)
            env[node] = cx.b.input(shape, to_dtype(val.dtype), name=node.name)
            user.append(node.name)
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            tensor = ep.state_dict.get(spec.target)
            tensor = ep.constants[spec.target] if tensor is None else tensor
            env[node] = cx.b.const(to_numpy(tensor), name=spec.target)
        else:
            raise UnsupportedError(f"placeholder {node.name!r} of kind {spec.kind.name}")
    return user


def from_exported_program(
    ep: torch.export.ExportedProgram,
    *,
    name: str | None = None,
    symbol_names: Mapping[str, str] | None = None,
) -> TorchImport:
    """Import an ExportedProgram (aten-level; decompose it first for fewer distinct ops).

    Parameters and buffers become constants, user inputs become graph inputs; SymInt dims become
    symbols named as torch names them, or by `symbol_names` ({"s77": "batch"}). In-place updates
    of inputs and buffers are not outputs of the imported graph (see `mutated_targets`).
    """
    symbols = _symbol_map(ep, symbol_names or {})
    b = Builder(name or "main")
    cx = Context(b, symbols)
    env: dict[torch.fx.Node, Any] = {}
    _placeholders(ep, cx, env)
    outputs = list(convert_graph(ep.graph, cx, env, b.name))
    specs = ep.graph_signature.output_specs
    kept = [
        (out, s) for out, s in zip(outputs, specs, strict=True) if s.kind is OutputKind.USER_OUTPUT
    ]
    _emit_outputs(cx, env, [out for out, _ in kept], [getattr(s.arg, "name", "") for _, s in kept])
    graph = b.build(_symbol_ranges(ep, symbols))
    return TorchImport(graph, ep.call_spec.out_spec, ep.call_spec.in_spec)


def mutated_targets(ep: torch.export.ExportedProgram) -> list[str]:
    """The inputs and buffers `ep` updates in place (dropped by `from_exported_program`)."""
    kinds = (OutputKind.USER_INPUT_MUTATION, OutputKind.BUFFER_MUTATION)
    return [str(s.target) for s in ep.graph_signature.output_specs if s.kind in kinds]


def _emit_outputs(cx: Context, env: dict, outputs: list[Any], names: list[str]) -> None:
    for i, out in enumerate(outputs):
        value = env[out] if isinstance(out, torch.fx.Node) else out
        if not isinstance(value, Value):
            raise UnsupportedError(f"output {i} is {type(value).__name__}, not a tensor")
        cx.b.output(value, names=(names[i] or f"output{i}",))
