"""Value specialization: import a model whose shape-like operands (Reshape's shape, TopK's K,
Pad's pads, ...) are graph inputs, by binding those inputs to the values of one call.

The compiled graph is then valid only for those values; `ember.compile` guards on them and
recompiles when a call passes different ones (as torch.compile does for Python ints).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ember.errors import InputError
from ember.frontend.onnx.context import ConstantInputError
from ember.frontend.onnx.importer import from_onnx, load_model
from ember.ir import Graph

__all__ = ["import_specialized", "input_names"]


def import_specialized(
    model: Any, values: Mapping[str, np.ndarray]
) -> tuple[Graph, tuple[str, ...]]:
    """The graph with the needed inputs bound to `values`, and the names of those inputs."""
    import onnx
    from onnx import numpy_helper

    proto = load_model(model)
    bound: list[str] = []
    while True:
        try:
            return from_onnx(proto), tuple(bound)
        except ConstantInputError as err:
            name = err.input_name
            if name in bound or name not in values:
                raise
            bound.append(name)
            proto = onnx.ModelProto.FromString(proto.SerializeToString())
            kept = [i for i in proto.graph.input if i.name != name]
            del proto.graph.input[:]
            proto.graph.input.extend(kept)
            proto.graph.initializer.append(numpy_helper.from_array(np.asarray(values[name]), name))


def input_names(model: Any) -> tuple[str, ...]:
    """The model's graph input names, in order (initializers excluded)."""
    proto = load_model(model)
    initializers = {t.name for t in proto.graph.initializer}
    names = tuple(i.name for i in proto.graph.input if i.name not in initializers)
    if not names and len(proto.graph.input):
        raise InputError("the model has no graph inputs that are not initializers")
    return names
