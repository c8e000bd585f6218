"""Expanding ONNX function ops (Attention, NegativeLogLikelihoodLoss, ...) into the primitive
nodes of their schema's function body, for ops without a dedicated converter."""

from __future__ import annotations

import itertools
from typing import Any

from ember.ir import TensorType

__all__ = ["expand_function", "has_function"]

_fresh = itertools.count()


def _schema(op_type: str, opset: int, domain: str) -> Any:
    import onnx

    try:
        return onnx.defs.get_schema(op_type, opset, domain)
    except Exception:  # onnx.defs.SchemaError: not an op of this opset
        return None


def has_function(op_type: str, opset: int, domain: str = "") -> bool:
    """Whether the op's schema at `opset` defines a function body ember can expand."""
    schema = _schema(op_type, opset, domain)
    return schema is not None and bool(
        _usable(schema.function_opset_versions, opset)
        or _usable(schema.context_dependent_function_opset_versions, opset)
    )


def _usable(versions: list[int], opset: int) -> int | None:
    eligible = [v for v in versions if v <= opset]
    return max(eligible) if eligible else None


def _type_proto(t: TensorType | None) -> Any:
    from onnx import TypeProto, helper

    if t is None:
        return TypeProto()
    shape = [d if isinstance(d, int) else str(d) for d in t.shape]
    return helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(t.dtype.numpy), shape)


def expand_function(
    node: Any, opset: int, input_types: list[TensorType | None]
) -> list[Any] | None:
    """The nodes of `node`'s function body with edges renamed into the caller's graph."""
    from onnx import FunctionProto, NodeProto

    schema = _schema(node.op_type, opset, node.domain)
    if schema is None:
        return None
    full = NodeProto()
    full.CopyFrom(node)
    present = {a.name for a in node.attribute}
    for name, attr in schema.attributes.items():
        if name not in present and attr.default_value.name:
            full.attribute.append(attr.default_value)
    function = FunctionProto()
    version = _usable(schema.function_opset_versions, opset)
    if version is not None:
        function.ParseFromString(schema.get_function_with_opset_version(version))
    else:
        version = _usable(schema.context_dependent_function_opset_versions, opset)
        if version is None:
            return None
        types = [_type_proto(t).SerializeToString() for t in input_types]
        body = schema.get_context_dependent_function_with_opset_version(
            version, full.SerializeToString(), types
        )
        function.ParseFromString(body)
    return _inline(full, function, f"{node.op_type}_{next(_fresh)}/")


def _inline(node: Any, function: Any, prefix: str) -> list[Any]:
    from onnx import AttributeProto, NodeProto

    names = {
        name: (node.input[i] if i < len(node.input) else "")
        for i, name in enumerate(function.input)
    }
    for i, name in enumerate(function.output):
        if i < len(node.output) and node.output[i]:
            names[name] = node.output[i]
    attrs = {a.name: a for a in node.attribute}

    def rename(name: str) -> str:
        return names.get(name, prefix + name if name else "")

    inlined = []
    for inner in function.node:
        if any(a.type == AttributeProto.GRAPHS for a in inner.attribute):
            return []  # graph-list attributes are not supported; the caller reports the op
        new = NodeProto()
        new.CopyFrom(inner)
        del new.input[:], new.output[:], new.attribute[:]
        new.input.extend(rename(n) for n in inner.input)
        new.output.extend(rename(n) for n in inner.output)
        new.name = prefix + (inner.name or inner.op_type)
        for attr in inner.attribute:
            if attr.ref_attr_name:
                if attr.ref_attr_name in attrs:
                    copy = AttributeProto()
                    copy.CopyFrom(attrs[attr.ref_attr_name])
                    copy.name = attr.name
                    new.attribute.append(copy)
            else:
                new.attribute.append(attr)
                if attr.type == AttributeProto.GRAPH:
                    _rename_graph(new.attribute[-1].g, rename)
        inlined.append(new)
    return inlined


def _rename_graph(graph: Any, rename: Any) -> None:
    """Rename every value in a subgraph (If branches) as its enclosing function body's values
    are renamed: definitions and uses alike, so its references to outer values follow them."""
    for value in [*graph.input, *graph.output, *graph.initializer]:
        value.name = rename(value.name)
    for node in graph.node:
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
        for attr in node.attribute:
            if attr.g.node:
                _rename_graph(attr.g, rename)
