"""`from_onnx`: load an ONNX model (opset >= 13, older ones are upgraded) into an ember Graph."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ember.errors import EmberError, InputError, UnsupportedError
from ember.frontend.onnx.context import Context, OnnxNode, onnx_dtype
from ember.frontend.onnx.control import CONTROL_FLOW
from ember.frontend.onnx.functions import expand_function, has_function
from ember.frontend.onnx.registry import CONVERTERS
from ember.ir import Builder, Graph, Loc, Value, sym
from ember.ir.types import Dim

__all__ = ["from_onnx"]

_MIN_OPSET = 13
_ONNX_DOMAINS = ("", "ai.onnx")


def from_onnx(model: Any) -> Graph:
    """Import an `onnx.ModelProto` or a path to a .onnx file.

    Raises UnsupportedError listing every op type without a converter, and InputError for a
    file that is not a readable ONNX model.
    """
    proto = _upgrade(load_model(model))
    graph = proto.graph
    opset = next((o.version for o in proto.opset_import if o.domain in _ONNX_DOMAINS), _MIN_OPSET)
    _check_supported(graph, opset)
    ctx = Context(Builder(graph.name or "main"), opset)
    names = _bind_graph_inputs(ctx, graph)
    for node in graph.node:
        _convert_node(ctx, node, names)
    outputs = []
    for out in graph.output:
        if out.name not in names:
            raise UnsupportedError(f"graph output {out.name!r} is not produced by any node")
        outputs.append(names[out.name])
    ctx.b.output(*outputs, names=tuple(o.name for o in graph.output))
    return ctx.b.build()


def load_model(model: Any) -> Any:
    """The ModelProto for a ModelProto or a path; InputError for an unreadable file."""
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    if not isinstance(model, str | os.PathLike):
        raise InputError(
            f"from_onnx expects an onnx.ModelProto or a path, got {type(model).__name__}"
        )
    path = os.fspath(model)
    try:
        return onnx.load(path)
    except FileNotFoundError:
        raise InputError(f"ONNX model file {path!r} does not exist") from None
    except Exception as err:
        raise InputError(
            f"cannot read {path!r} as an ONNX model ({type(err).__name__}: {err}); the file may be "
            "truncated or not ONNX: re-export or re-download it, and check it with onnx.checker"
        ) from err


def _upgrade(proto: Any) -> Any:
    from onnx import version_converter

    opset = next((o.version for o in proto.opset_import if o.domain in _ONNX_DOMAINS), None)
    if opset is None or opset >= _MIN_OPSET:
        return proto
    try:
        return version_converter.convert_version(proto, _MIN_OPSET)
    except Exception as err:
        raise UnsupportedError(
            f"model uses opset {opset} and the ONNX version converter could not upgrade it to "
            f"{_MIN_OPSET} ({err}); re-export it with opset >= {_MIN_OPSET}"
        ) from err


def _op_key(node: Any) -> str:
    return node.op_type if node.domain in _ONNX_DOMAINS else f"{node.domain}.{node.op_type}"


def _supported(node: Any, opset: int) -> bool:
    if node.domain not in _ONNX_DOMAINS:
        return False
    return (
        node.op_type in CONVERTERS
        or node.op_type in CONTROL_FLOW
        or has_function(node.op_type, opset)
    )


def _check_supported(graph: Any, opset: int) -> None:
    missing: dict[str, tuple[int, str]] = {}
    for i, node in enumerate(graph.node):
        if not _supported(node, opset):
            key = _op_key(node)
            count, first = missing.get(key, (0, node.name or f"#{i}"))
            missing[key] = (count + 1, first)
    if missing:
        raise _missing_error(missing, graph.name)


def _missing_error(missing: dict[str, tuple[int, str]], model: str) -> UnsupportedError:
    width = max(len(k) for k in missing) + 2
    noun = "op has" if len(missing) == 1 else "ops have"
    lines = [f"{len(missing)} ONNX {noun} no converter (model: {model or 'main'})"]
    lines += [
        f"  {k:<{width}} x{count:<3} first at node {first!r}"
        for k, (count, first) in missing.items()
    ]
    return UnsupportedError("\n".join(lines))


def _input_shape(value_info: Any, fresh: itertools.count) -> tuple[Dim, ...]:
    dims: list[Dim] = []
    for axis, d in enumerate(value_info.type.tensor_type.shape.dim):
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            dims.append(sym(d.dim_param or f"{value_info.name}_{axis}_{next(fresh)}"))
    return tuple(dims)


def _bind_graph_inputs(ctx: Context, graph: Any) -> dict[str, Value]:
    from onnx import numpy_helper

    names: dict[str, Value] = {}
    for init in graph.initializer:
        try:
            array = numpy_helper.to_array(init)
        except Exception as err:
            raise UnsupportedError(f"initializer {init.name!r} cannot be read: {err}") from err
        onnx_dtype(init.data_type, f"initializer {init.name!r}")
        names[init.name] = ctx.const(np.array(array))
    fresh = itertools.count()
    for inp in graph.input:
        if inp.name in names:
            continue
        if not inp.type.HasField("tensor_type"):
            raise UnsupportedError(f"graph input {inp.name!r} is not a tensor (sequences, maps and "
                                   "optionals are not supported)")  # fmt: skip
        dtype = onnx_dtype(inp.type.tensor_type.elem_type, f"graph input {inp.name!r}")
        names[inp.name] = ctx.b.input(_input_shape(inp, fresh), dtype, name=inp.name)
    return names


def _convert_node(ctx: Context, node: Any, names: dict[str, Value]) -> None:
    from onnx import helper

    label = node.name or f"{node.op_type}({', '.join(node.output)})"
    inputs = []
    for name in node.input:
        if name and name not in names:
            raise UnsupportedError(f"{node.op_type} node {label!r}: input {name!r} is not defined")
        inputs.append(names[name] if name else None)
    if node.op_type in CONTROL_FLOW:  # subgraphs: they need the enclosing graph's names
        ctx.loc = Loc(f"onnx node {label!r} ({node.op_type})")
        CONTROL_FLOW[node.op_type](ctx, node, label, inputs, names, _run_body)
        return
    if node.op_type not in CONVERTERS:
        body = expand_function(node, ctx.opset, [v.type if v is not None else None for v in inputs])
        if not body:
            raise _missing_error({_op_key(node): (1, label)}, ctx.b.name)
        for inner in body:
            if not _supported(inner, ctx.opset):
                raise _missing_error(
                    {_op_key(inner): (1, f"{inner.name} (inside {label!r})")}, ctx.b.name
                )
            _convert_node(ctx, inner, names)
        return
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
    onnx_node = OnnxNode(node.op_type, label, tuple(inputs), attrs, len(node.output))
    ctx.loc = Loc(f"onnx node {label!r} ({node.op_type})")
    try:
        result = CONVERTERS[node.op_type](ctx, onnx_node)
    except EmberError as err:
        err.add_note(f"while converting {node.op_type} node {label!r}")
        raise
    except Exception as err:
        raise UnsupportedError(
            f"{node.op_type} node {label!r} could not be converted: {err}"
        ) from err
    outs: Sequence[Value] = (result,) if isinstance(result, Value) else tuple(result)
    for name, v in zip(node.output, outs, strict=False):
        if name:
            names[name] = v


def _run_body(ctx: Context, body: Any, scope: dict[str, Value]) -> None:
    """Convert a subgraph's initializers and nodes into `scope`."""
    from onnx import numpy_helper

    for init in body.initializer:
        scope[init.name] = ctx.const(np.array(numpy_helper.to_array(init)))
    for inner in body.node:
        if not _supported(inner, ctx.opset):
            raise _missing_error({_op_key(inner): (1, f"{inner.name} (in a subgraph)")}, ctx.b.name)
        _convert_node(ctx, inner, scope)
