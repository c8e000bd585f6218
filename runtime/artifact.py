"""`load(path)`: an exported model as a callable on numpy arrays, without the compiler.

    import ember.runtime
    model = ember.runtime.load("model.so")
    (y,) = model(x)                   # numpy in, list of numpy out
    model.inputs, model.outputs       # names, dtypes, shapes (symbol names for dynamic dims)

Imports numpy, tvm-ffi and libtvm_runtime.so only: no torch, onnx, `tvm` or ember compiler.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ember.errors import ArtifactError, InputError
from ember.runtime.inputs import check_inputs
from ember.runtime.library import ffi, open_library, read_metadata
from ember.runtime.metadata import Metadata, TensorSpec
from ember.runtime.profiling import KernelTime, profile_call

__all__ = ["LoadedModel", "load"]

_ALIGNMENT = 64  # TVM's kernels assume 64-byte aligned buffers


def load(path: str | os.PathLike[str]) -> LoadedModel:
    """Load a `.so` written by `ember compile` or `CompiledModel.export`."""
    metadata = read_metadata(path)
    if metadata.target.get("kind") != "llvm":
        raise ArtifactError(
            f"{path} was built for {metadata.target.get('kind')}; ember.runtime.load runs CPU "
            f"(llvm) libraries only: compile with --target llvm, or load it on the GPU machine "
            f"with the TVM runtime (tvm.runtime.load_module)"
        )
    return LoadedModel(os.fspath(path), metadata, open_library(path))


class LoadedModel:
    """An exported model: call it with numpy arrays, one per input, in order."""

    def __init__(self, path: str, metadata: Metadata, vm: Any) -> None:
        self.path = path
        self.metadata = metadata
        self._vm = vm
        self._main = vm["main"]

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.metadata.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.metadata.outputs

    def __repr__(self) -> str:
        ins = ", ".join(map(str, self.inputs))
        outs = ", ".join(map(str, self.outputs))
        return f"LoadedModel({self.path!r}: ({ins}) -> ({outs}))"

    def __call__(self, *arrays: Any) -> list[np.ndarray]:
        """Check the inputs against the signature, run `main`, return the outputs."""
        return self.run_prepared(self.prepare(*arrays))

    def profile(self, *arrays: Any) -> list[KernelTime]:
        """Per-kernel times of one call, slowest first."""
        prepared = self.prepare(*arrays)
        return profile_call(self._vm, ffi(), lambda: self.run_prepared(prepared))

    def prepare(self, *arrays: Any) -> list[Any]:
        """Checked, aligned runtime tensors for `arrays`: `run_prepared` them repeatedly to time."""
        converted = [_as_numpy(a, i, self.inputs) for i, a in enumerate(arrays)]
        check_inputs(self.inputs, converted, self.metadata.symbol_ranges)
        tvm_ffi = ffi()
        return [tvm_ffi.from_dlpack(_aligned(a)) for a in converted]

    def run_prepared(self, tensors: list[Any]) -> list[np.ndarray]:
        """Run on tensors from `prepare` (no checks, no copies)."""
        result = self._main(*tensors)
        return [np.from_dlpack(t) for t in result]


def _as_numpy(array: Any, index: int, specs: tuple[TensorSpec, ...]) -> np.ndarray:
    if isinstance(array, np.ndarray):
        return array
    try:
        return np.asarray(array)
    except (TypeError, ValueError, RuntimeError) as err:
        name = specs[index].name if index < len(specs) else f"#{index}"
        raise InputError(
            f"input {name!r}: cannot convert {type(array).__name__} to a numpy array ({err}); "
            f"pass numpy arrays"
        ) from err


def _aligned(array: np.ndarray) -> np.ndarray:
    """`array` itself when C-contiguous and 64-byte aligned, else an aligned copy."""
    if array.flags.c_contiguous and array.ctypes.data % _ALIGNMENT == 0:
        return array
    raw = np.empty(array.nbytes + _ALIGNMENT, dtype=np.uint8)
    offset = -raw.ctypes.data % _ALIGNMENT
    out = raw[offset : offset + array.nbytes].view(array.dtype).reshape(array.shape)
    out[...] = array
    return out
