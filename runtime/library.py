"""Open an exported `.so` with the TVM runtime only: tvm-ffi plus `libtvm_runtime.so`.

`import tvm` would load the compiler (and torch, through tvm-ffi): 3+ s and hundreds of modules.
A deployed model needs neither, so this module loads tvm-ffi with torch hidden, puts
libtvm_runtime's symbols in the global namespace (the model library resolves `TVMFFI*` and the VM
builtins from there), then reads the ember metadata and creates a Relax VM.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import struct
import sys
from functools import cache
from pathlib import Path
from typing import Any

from ember.errors import ArtifactError
from ember.runtime.metadata import SYMBOL, Metadata
from ember.runtime.threads import size_thread_pool

__all__ = ["KDL_CPU", "ffi", "open_library", "read_metadata"]

KDL_CPU = 1  # DLPack's device type for the host CPU
_POOLED_ALLOCATOR = 2  # the Relax VM's pooled memory allocator
_ELF_MAGIC = b"\x7fELF"
_ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr
_PROGRAM_HEADER = struct.Struct("<8xQ16xQ")  # Elf64_Phdr: p_offset and p_filesz


@cache
def ffi() -> Any:
    """The `tvm_ffi` module with the TVM runtime library loaded."""
    size_thread_pool()
    hide_torch = "torch" not in sys.modules
    if hide_torch:  # tvm_ffi imports torch eagerly only to speed up torch DLPack: not needed here
        sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        import tvm_ffi
    finally:
        if hide_torch:
            del sys.modules["torch"]
    ctypes.CDLL(str(_tvm_lib_dir() / "libtvm_runtime.so"), ctypes.RTLD_GLOBAL)
    return tvm_ffi


def _tvm_lib_dir() -> Path:
    spec = importlib.util.find_spec("tvm")  # locates the wheel without running tvm/__init__.py
    if spec is None or spec.origin is None:
        raise ArtifactError(
            "the TVM runtime library is missing; install it with: "
            "pip install apache-tvm==0.27.0.post1"
        )
    return Path(spec.origin).parent / "lib"


def _check_file(path: str) -> None:
    """Refuse what dlopen would crash on (SIGBUS on a truncated file) or misreport."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise ArtifactError(f"cannot read {path}: {err.strerror}") from err
    if data[:4] != _ELF_MAGIC:
        raise ArtifactError(
            f"{path} is not a shared library (no ELF header); pass a .so written by "
            f"`ember compile` or CompiledModel.export"
        )
    if len(data) < _ELF_HEADER.size or data[4:6] != b"\x02\x01":
        raise ArtifactError(f"{path} is not a 64-bit little-endian library, or is truncated")
    fields = _ELF_HEADER.unpack_from(data)
    phoff, shoff, phentsize, phnum, shentsize, shnum = (fields[i] for i in (5, 6, 9, 10, 11, 12))
    end = max(phoff + phentsize * phnum, shoff + shentsize * shnum)
    for i in range(phnum if phoff + phentsize * phnum <= len(data) else 0):
        offset, filesz = _PROGRAM_HEADER.unpack_from(data, phoff + i * phentsize)
        end = max(end, offset + filesz)
    if end > len(data):
        raise ArtifactError(
            f"{path} is truncated ({len(data)} bytes, its headers need {end}); "
            f"copy or export it again"
        )


def read_metadata(path: str | os.PathLike[str]) -> Metadata:
    """The ember metadata embedded in an exported library; ArtifactError if it has none."""
    path = os.fspath(path)
    _check_file(path)
    ffi()  # the library's TVMFFI* references must resolve when it is opened
    try:
        lib = ctypes.CDLL(os.path.abspath(path))
    except OSError as err:
        raise ArtifactError(
            f"cannot load {path}: {err}; the file is damaged or truncated, re-export it"
        ) from err
    try:
        address = ctypes.addressof(ctypes.c_char.in_dll(lib, SYMBOL))
    except ValueError:
        raise ArtifactError(
            f"{path} is not an ember model (it has no {SYMBOL} symbol); export one with "
            f"`ember compile` or CompiledModel.export"
        ) from None
    text = ctypes.string_at(address).decode("utf-8", errors="replace")
    return Metadata.from_json(text, path)


def open_library(path: str | os.PathLike[str]) -> Any:
    """A Relax VM (a tvm-ffi Module with `main`) for the library, running on the CPU."""
    tvm_ffi = ffi()
    try:
        module = tvm_ffi.load_module(os.path.abspath(os.fspath(path)))
        vm = module["vm_load_executable"]()
        vm["vm_initialization"](KDL_CPU, 0, _POOLED_ALLOCATOR)
    except Exception as err:  # tvm-ffi raises RuntimeError/AttributeError subclasses alike
        raise ArtifactError(f"the TVM runtime could not load {path}: {err}") from err
    return vm
