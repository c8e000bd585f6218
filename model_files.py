"""The MODEL argument of the command line, imported as an ember graph.

MODEL is an `.onnx` file, a torch.export `.pt2` file, or `package.module:factory` (also
`path/to/file.py:factory`) naming a function that returns `(model, example_inputs)`.
`--input-shapes` and `--dynamic` reshape ONNX inputs and factory example inputs; a `.pt2` file
carries the shapes it was exported with.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ember.errors import EmberError, InputError, UsageError
from ember.ir import Graph

__all__ = ["DynamicSpec", "ModelSource", "load_model", "parse_dynamic", "parse_input_shapes"]

DynamicSpec = dict[str, dict[int, str | tuple[str, int, int]]]

_SHAPE = re.compile(r"\s*([^:,\[\]\s]+)\s*:\s*\[([\d\s,]*)\]\s*(,|$)")
_DYNAMIC = re.compile(r"([^:,\s]+):(\d+)=([A-Za-z_]\w*)(?:\[(\d+):(\d+)\])?$")


@dataclass(frozen=True)
class ModelSource:
    """An imported MODEL: its graph, and for torch models the eager callable and its inputs."""

    graph: Graph
    kind: str  # "onnx", "pt2" or "factory"
    path: str
    eager: Any = None
    example_inputs: tuple[Any, ...] | None = None


def parse_input_shapes(text: str | None) -> dict[str, tuple[int, ...]]:
    """`x:[1,16],y:[2,3]` -> {"x": (1, 16), "y": (2, 3)}."""
    shapes: dict[str, tuple[int, ...]] = {}
    pos = 0
    while text and pos < len(text):
        match = _SHAPE.match(text, pos)
        if not match or match.end() == pos:
            raise UsageError(
                f"--input-shapes: cannot parse {text[pos:]!r}; write NAME:[1,16],NAME2:[4]"
            )
        shapes[match[1]] = tuple(int(d) for d in match[2].replace(" ", "").split(",") if d)
        pos = match.end()
    return shapes


def parse_dynamic(items: list[str] | None) -> DynamicSpec:
    """`x:0=batch`, `x:1=seq[1:512]` (comma-separated or repeated) -> import_module's `dynamic`."""
    spec: DynamicSpec = {}
    for item in (part.strip() for text in items or [] for part in text.split(",") if part.strip()):
        match = _DYNAMIC.match(item)
        if not match:
            raise UsageError(
                f"--dynamic: cannot parse {item!r}; "
                f"write NAME:AXIS=SYMBOL or NAME:AXIS=SYMBOL[MIN:MAX]"
            )
        name, axis, symbol, lo, hi = match.groups()
        spec.setdefault(name, {})[int(axis)] = (symbol, int(lo), int(hi)) if lo else symbol
    return spec


def load_model(
    spec: str, input_shapes: Mapping[str, tuple[int, ...]], dynamic: DynamicSpec
) -> ModelSource:
    """Import MODEL, applying --input-shapes and --dynamic."""
    if spec.endswith(".onnx"):
        return _load_onnx(_existing(spec), input_shapes, dynamic)
    if spec.endswith(".pt2"):
        if input_shapes or dynamic:
            raise UsageError(
                "--input-shapes/--dynamic do not apply to .pt2 files: re-export with torch.export"
            )
        return _load_pt2(_existing(spec))
    if ":" in spec:
        return _load_factory(spec, input_shapes, dynamic)
    raise UsageError(f"MODEL {spec!r} is not an .onnx file, a .pt2 file or package.module:factory")


def _existing(path: str) -> str:
    if not Path(path).is_file():
        raise UsageError(f"no such file: {path}")
    return path


def _load_onnx(
    path: str, shapes: Mapping[str, tuple[int, ...]], dynamic: DynamicSpec
) -> ModelSource:
    import onnx

    from ember.frontend.onnx import from_onnx

    try:
        proto = onnx.load(path)
    except Exception as err:  # protobuf raises DecodeError, onnx raises ValueError/OSError
        raise InputError(f"{path} is not a readable ONNX model: {err}") from err
    inputs = {
        i.name: i
        for i in proto.graph.input
        if i.name not in {t.name for t in proto.graph.initializer}
    }
    for name in [*shapes, *dynamic]:
        if name not in inputs:
            raise UsageError(f"{path} has no input {name!r}; its inputs are {list(inputs)}")
    for name, shape in shapes.items():
        dims = inputs[name].type.tensor_type.shape.dim
        if len(dims) != len(shape):
            raise UsageError(
                f"--input-shapes: input {name!r} has rank {len(dims)}, got {list(shape)}"
            )
        for dim, size in zip(dims, shape, strict=True):
            dim.dim_value = size
    for name, axes in dynamic.items():
        dims = inputs[name].type.tensor_type.shape.dim
        for axis, entry in axes.items():
            if axis >= len(dims):
                raise UsageError(f"--dynamic: input {name!r} has rank {len(dims)}, no axis {axis}")
            dims[axis].dim_param = entry if isinstance(entry, str) else entry[0]
    g = from_onnx(proto)
    return ModelSource(_with_ranges(g, dynamic), "onnx", path)


def _with_ranges(g: Graph, dynamic: DynamicSpec) -> Graph:
    ranges = {
        e[0]: (e[1], e[2])
        for axes in dynamic.values()
        for e in axes.values()
        if not isinstance(e, str)
    }
    return dataclasses.replace(g, symbol_ranges={**g.symbol_ranges, **ranges}) if ranges else g


def _load_pt2(path: str) -> ModelSource:
    import torch

    from ember.frontend.torch import decompose, from_exported_program

    try:
        ep = torch.export.load(path)
    except Exception as err:  # torch raises RuntimeError/ValueError/zipfile errors alike
        raise InputError(f"{path} is not a readable torch.export program: {err}") from err
    imported = from_exported_program(decompose(ep), name=Path(path).stem)
    example = ep.example_inputs[0] if ep.example_inputs else None
    return ModelSource(imported.graph, "pt2", path, ep.module(), example)


def _load_factory(
    spec: str, shapes: Mapping[str, tuple[int, ...]], dynamic: DynamicSpec
) -> ModelSource:
    from ember.frontend.torch import import_module

    module_name, _, attr = spec.rpartition(":")
    factory = getattr(_import(module_name), attr, None)
    if not callable(factory):
        raise UsageError(f"{module_name} has no function {attr!r}")
    try:
        made = factory()
    except Exception as err:  # the user's factory: any exception is theirs to see
        raise InputError(f"{spec} raised {type(err).__name__}: {err}") from err
    if not (isinstance(made, tuple) and len(made) == 2):
        raise UsageError(f"{spec} must return (model, example_inputs), got {type(made).__name__}")
    model, example = made[0], tuple(made[1])
    example = _reshaped(model, example, shapes) if shapes else example
    imported = import_module(model, example, dynamic=dynamic or None)
    return ModelSource(imported.graph, "factory", spec, model, example)


def _import(module_name: str) -> Any:
    try:
        if module_name.endswith(".py"):
            path = _existing(module_name)
            loader = importlib.util.spec_from_file_location(Path(path).stem, path)
            assert loader is not None
            assert loader.loader is not None
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
            return module
        return importlib.import_module(module_name)
    except ImportError as err:
        raise UsageError(f"cannot import {module_name!r}: {err}; is it on PYTHONPATH?") from err
    except EmberError:
        raise
    except Exception as err:  # the user's module failed while running its top level
        raise InputError(f"importing {module_name!r} failed: {type(err).__name__}: {err}") from err


def _reshaped(
    model: Any, example: tuple[Any, ...], shapes: Mapping[str, tuple[int, ...]]
) -> tuple[Any, ...]:
    import torch

    forward = model.forward if isinstance(model, torch.nn.Module) else model
    names = [p.name for p in inspect.signature(forward).parameters.values()][: len(example)]
    updated = list(example)
    for name, shape in shapes.items():
        if name not in names:
            raise UsageError(
                f"--input-shapes: the model has no input {name!r}; its inputs are {names}"
            )
        old = updated[names.index(name)]
        maker = torch.randn if old.dtype.is_floating_point else torch.zeros
        updated[names.index(name)] = maker(shape, dtype=old.dtype)
    return tuple(updated)
