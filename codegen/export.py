"""Write a built model as one shared library, and its generated source for reading.

`export_library` links the Relax executable (kernels, VM bytecode and weights, which are
constants of the module) with a tiny C file defining the NUL-terminated JSON string
`ember_artifact_metadata` (see `ember.runtime.metadata`). One `.so` is the whole model: it
still loads with plain `dlopen`, and both loaders read the metadata with `dlsym`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ember.errors import CodegenError
from ember.ir import Graph, print_graph
from ember.ir.types import TensorType, dim_str
from ember.runtime.metadata import SYMBOL, Metadata, TensorSpec, package_versions

__all__ = ["emit_source", "export_library", "graph_metadata"]

log = logging.getLogger(__name__)


def _spec(name: str, t: TensorType) -> TensorSpec:
    return TensorSpec(
        name, t.dtype.value, tuple(d if isinstance(d, int) else dim_str(d) for d in t.shape)
    )


def graph_metadata(g: Graph, target: dict[str, Any], *, destinations: bool = False) -> Metadata:
    """The metadata an export of `g` built for `target` carries (`destinations`: built to write
    its outputs into tensors passed after the inputs, see codegen/destinations.py)."""
    out_names = g.output_names or tuple(f"output{i}" for i in range(len(g.outputs)))
    inputs = [_spec(n, v.type) for n, v in zip(g.input_names, g.inputs, strict=True)]
    if destinations:
        inputs += [_spec(f"destination{i}", v.type) for i, v in enumerate(g.outputs)]
    return Metadata(
        inputs=tuple(inputs),
        outputs=tuple(_spec(n, v.type) for n, v in zip(out_names, g.outputs, strict=True)),
        symbol_ranges=dict(g.symbol_ranges),
        target=dict(target),
        versions=package_versions(),
        graph_name=g.name,
        param_bytes=g.param_bytes,
        op_histogram=g.op_histogram(),
        ir=print_graph(g),
    )


def _metadata_source(metadata: Metadata) -> str:
    data = metadata.to_json().encode() + b"\0"
    rows = [", ".join(f"0x{b:02x}" for b in data[i : i + 16]) for i in range(0, len(data), 16)]
    body = ",\n  ".join(rows)
    # compiled by TVM's linker driver (g++): the extern declaration keeps the const external in C++
    return (
        f"extern const char {SYMBOL}[];\n"
        f'__attribute__((visibility("default"))) const char {SYMBOL}[] = {{\n  {body}\n}};\n'
    )


def export_library(executable: Any, metadata: Metadata, path: str | os.PathLike[str]) -> Path:
    """Write `executable` and `metadata` as one `.so` at `path` (replaced atomically)."""
    out = Path(path).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ember-export-") as work:
        source = Path(work) / "ember_metadata.c"
        source.write_text(_metadata_source(metadata))
        partial = Path(work) / out.name
        try:
            executable.export_library(str(partial), addons=[str(source)], workspace_dir=work)
        except Exception as err:  # TVM's linker driver raises RuntimeError/OSError alike
            raise CodegenError(
                f"writing {out} failed: {str(err).strip().splitlines()[-1:]}; check that a C++ "
                f"compiler (g++) is on PATH"
            ) from err
        staged = out.with_name(f".{out.name}.partial")  # same directory: the rename is atomic
        shutil.copyfile(partial, staged)
        os.replace(staged, out)
    log.info("exported %s (%d bytes)", out, out.stat().st_size)
    return out


def emit_source(executable: Any, directory: str | os.PathLike[str]) -> list[Path]:
    """Write the VM bytecode (`main.vm.txt`) and each kernel module's source into `directory`.

    LLVM modules give `kernels.ll` and `kernels.s`; device modules (CUDA, ROCm, OpenCL) give
    their source under the formats TVM reports.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    written = [root / "main.vm.txt"]
    written[0].write_text(executable.as_text())
    for i, module in enumerate(_modules(executable.mod)):
        stem = "kernels" if i == 0 else f"kernels{i}"
        formats = ("ll", "s") if module.kind == "llvm" else (_device_format(module),)
        for fmt in formats:
            text = module.inspect_source("asm" if fmt == "s" else fmt)
            if text:
                path = (
                    root / f"{stem}.{module.kind}.{fmt}"
                    if module.kind != "llvm"
                    else root / f"{stem}.{fmt}"
                )
                path.write_text(text)
                written.append(path)
    return written


def _modules(module: Any) -> list[Any]:
    found: list[Any] = []
    for child in module.imports:
        found += [child, *_modules(child)]
    return found


def _device_format(module: Any) -> str:
    formats = list(module.get_write_formats())
    return formats[0] if formats else {"cuda": "cu"}.get(module.kind, module.kind)
