"""ember as a torch.compile backend: `torch.compile(model, backend="ember")`.

Dynamo hands over one torch-level FX graph per region between graph breaks, called with real
example inputs (parameters lifted to inputs) and, once a dim has changed between calls, SymInt
arguments for the sizes it made dynamic. Each graph takes the same route as `ember.compile`:
torch.export (non-strict; Dynamo's dynamic dims stay dynamic), core-ATen decomposition, import,
then `ember.api.compile_graph` (passes, on-disk cache, codegen). Inference only; in-place updates
of inputs (buffers included) come back as extra outputs and are copied into the inputs.

The entry point path is fixed by pyproject (`torch_dynamo_backends`), so this frontend module calls
up into `ember.api` lazily: the backend is glue, like `api.py`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sympy
import torch

from ember.errors import EmberError, UnsupportedError
from ember.frontend.torch import ExportError, TorchImport, decompose, from_exported_program

__all__ = ["backend"]

log = logging.getLogger(__name__)

_OPTIONS = ("target", "passes", "cache")
_MAX_DIM = 2**31 - 1
_DynamicSpec = dict[int, dict[int, tuple[str, int, int]]]


def backend(
    gm: torch.fx.GraphModule,
    example_inputs: Sequence[Any],
    *,
    options: Mapping[str, Any] | None = None,
    mode: str | None = None,
) -> Callable[..., Any]:
    """Compile one Dynamo graph with ember; returns a function of the same flat arguments.

    `options` (from `torch.compile(..., options={...})`) takes `target`, `passes` and `cache`,
    as `ember.compile` does.
    """
    from ember.api import compile_graph

    settings = _settings(options, mode)
    _check_inference(example_inputs)
    positions = [i for i, a in enumerate(example_inputs) if isinstance(a, torch.Tensor)]
    tensors = tuple(example_inputs[i] for i in positions)
    imported, mutated = _import(gm, example_inputs, tensors)
    program = compile_graph(imported.graph, **settings)
    log.info("ember: compiled a Dynamo graph for shapes %s", [tuple(t.shape) for t in tensors])

    def run(*args: Any) -> Any:
        outputs = program.run([args[i] for i in positions])
        flat = [torch.from_dlpack(t) for t in outputs]
        result, updates = torch.utils._pytree.tree_unflatten(flat, imported.out_spec)
        for index, value in zip(mutated, updates, strict=True):
            args[positions[index]].copy_(value)  # in-place updates the graph made to its inputs
        return result

    return run


def _import(
    gm: torch.fx.GraphModule, example_inputs: Sequence[Any], tensors: tuple[Any, ...]
) -> tuple[TorchImport, list[int]]:
    """Export and import `gm` over its tensor arguments; returns the import and the indices of
    tensor arguments it updates in place (their new values are the last outputs).

    The first export finds the updates; ember graphs are pure, so a graph that has any is
    exported again returning the updated tensors, which the caller copies back.
    """
    module, dynamic = _tensor_function(gm, example_inputs, mutated=())
    ep = _export(module, tensors, dynamic)
    mutated = _mutated_inputs(ep)
    if mutated:
        module, _ = _tensor_function(gm, example_inputs, mutated=mutated)
        ep = _export(module, tensors, dynamic)
    names = _symbol_names(ep, dynamic)
    return from_exported_program(ep, name="dynamo_graph", symbol_names=names), mutated


def _export(module: torch.nn.Module, tensors: tuple[Any, ...], dynamic: _DynamicSpec) -> Any:
    dims: dict[str, Any] = {}
    shapes: list[Any] = [None] * len(tensors)
    for index, axes in dynamic.items():
        shapes[index] = {
            axis: dims.setdefault(name, torch.export.Dim(name, min=lo, max=hi))
            for axis, (name, lo, hi) in axes.items()
        }
    # export must make its own fake mode, not reuse the one of the Dynamo trace around us
    with torch._guards.tracing(None), torch.no_grad():
        try:  # decomposing also functionalizes: in-place updates become extra outputs
            return decompose(
                torch.export.export(module, tensors, dynamic_shapes=shapes, strict=False)
            )
        except Exception as err:
            lines = str(err).strip().splitlines()[:12]
            raise ExportError(
                f"torch.export failed on a graph from Dynamo: {type(err).__name__}: "
                + "\n".join(lines)
            ) from err


def _mutated_inputs(ep: Any) -> list[int]:
    signature = ep.graph_signature
    updated = set(signature.user_inputs_to_mutate.values())
    return [i for i, name in enumerate(signature.user_inputs) if name in updated]


def _symbol_names(ep: Any, dynamic: _DynamicSpec) -> dict[str, str]:
    """torch.export's symbol name (s77) -> Dynamo's, read off the exported inputs' shapes."""
    nodes = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    users = list(ep.graph_signature.user_inputs)
    found: dict[str, str] = {}
    for index, axes in dynamic.items():
        shape = nodes[users[index]].meta["val"].shape
        for axis, (name, _, _) in axes.items():
            expr = _expr(shape[axis])
            if isinstance(expr, sympy.Symbol):
                found[expr.name] = name
    return found


def _settings(options: Mapping[str, Any] | None, mode: str | None) -> dict[str, Any]:
    if mode is not None:
        raise EmberError(
            f"torch.compile(backend='ember', mode={mode!r}): ember has no modes; "
            f"pass options={{'target': ..., 'passes': [...], 'cache': bool}} instead"
        )
    unknown = sorted(set(options or {}) - set(_OPTIONS))
    if unknown:
        raise EmberError(
            f"torch.compile(backend='ember'): unknown options {unknown}; "
            f"ember takes {list(_OPTIONS)}"
        )
    return dict(options or {})


def _check_inference(example_inputs: Sequence[Any]) -> None:
    needs_grad = [a for a in example_inputs if isinstance(a, torch.Tensor) and a.requires_grad]
    if torch.is_grad_enabled() and needs_grad:
        raise EmberError(
            f"ember's torch.compile backend is inference-only, but autograd is recording and "
            f"{len(needs_grad)} graph inputs require grad (parameters count); run the model "
            f"under torch.no_grad() or torch.inference_mode(), or call model.requires_grad_(False)"
        )


def _tensor_function(
    gm: torch.fx.GraphModule, example_inputs: Sequence[Any], *, mutated: Sequence[int]
) -> tuple[torch.nn.Module, _DynamicSpec]:
    """`gm` as a module over its tensor arguments alone, returning (gm's outputs, the tensors at
    `mutated`), and the dims Dynamo made symbolic as {tensor: {axis: (name, min, max)}}
    (symbols keep Dynamo's names, so equal dims stay equal).

    Dynamo also passes each dynamic size as a SymInt argument; the function reads it off a
    tensor argument that carries it, so the traced graph computes it from that shape.
    """
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    pairs = list(zip(placeholders, example_inputs, strict=True))
    carriers: dict[sympy.Symbol, tuple[int, int]] = {}
    dynamic: _DynamicSpec = {}
    names: list[str] = []
    for node, example in pairs:
        if not isinstance(example, torch.Tensor):
            continue
        index = len(names)
        names.append(node.name)
        for axis, size in enumerate(_example(node).shape):
            expr = _expr(size)
            if isinstance(expr, sympy.Symbol):
                carriers.setdefault(expr, (index, axis))
                dynamic.setdefault(index, {})[axis] = (expr.name, 2, _MAX_DIM)
    sources = [_source(node, example, carriers) for node, example in pairs]

    def forward(*tensors: Any) -> Any:
        it = iter(tensors)
        outputs = gm(*(next(it) if s is None else tensors[s[0]].shape[s[1]] for s in sources))
        return outputs, tuple(tensors[i] for i in mutated)

    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    # torch.export matches the dynamic spec against this signature (gm.forward shows only *args)
    signature = inspect.Signature([inspect.Parameter(n, kind) for n in names])
    forward.__signature__ = signature  # type: ignore[attr-defined]
    module = torch.nn.Module()
    module.forward = forward  # type: ignore[method-assign]
    return module, dynamic


def _source(
    node: torch.fx.Node, example: Any, carriers: Mapping[sympy.Symbol, tuple[int, int]]
) -> tuple[int, int] | None:
    """None for a tensor argument; (tensor index, axis) for a size read off a tensor."""
    if isinstance(example, torch.Tensor):
        return None
    expr = _expr(_example(node))
    if expr not in carriers:
        raise UnsupportedError(
            f"torch.compile passed the graph argument {node.name!r} = {example!r}, a dynamic "
            f"Python number that no tensor input's shape carries; ember graphs take tensors "
            f"only. Pass it as a tensor, or keep it static "
            f"(torch._dynamo.config.specialize_int = True)"
        )
    return carriers[expr]


def _example(node: torch.fx.Node) -> Any:
    return node.meta.get("example_value", node.meta.get("val"))


def _expr(size: Any) -> Any:
    return getattr(getattr(size, "node", None), "expr", None)
