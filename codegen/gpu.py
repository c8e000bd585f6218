"""Device code of a GPU build, written out and compiled ahead of time, with no GPU needed.

`emit_source` writes what TVM generated for the device: CUDA C (`.cu`, then `.ptx` and `.cubin`
from nvcc for the target's `arch`), ROCm (`.ll` LLVM IR, `.s` assembly, `.hsaco` AMDGPU code
object) or OpenCL C (`.cl`). This proves a build is complete for its GPU and lets a user inspect
or ship the kernels; the exported `.so` still carries the source, compiled on load on the GPU.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

from ember.codegen.target import resolve_target
from ember.errors import CodegenError

__all__ = ["EM_AMDGPU", "EM_CUDA", "compile_cuda", "cuda_toolkit", "elf_machine", "emit_source"]

EM_CUDA = 190
EM_AMDGPU = 224
_DEVICE_KINDS = {"cuda": "cuda", "rocm": "hip", "opencl": "opencl"}  # target kind: module kind
_NVCC_FLAGS = (
    "-O3",
    "--use_fast_math",
    "--expt-relaxed-constexpr",
    # TVM's fp16/bf16 kernels use the operators that cuda_fp16.h hides behind these macros
    "-U__CUDA_NO_HALF_OPERATORS__",
    "-U__CUDA_NO_HALF_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT16_OPERATORS__",
    "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
)
_NVCC_TIMEOUT_S = 900


def emit_source(built: Any, target: str | dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write the device code of `built` (a BuildResult, Relax executable or loaded module).

    CUDA also compiles the source with nvcc to PTX and a cubin for `target["arch"]`; ROCm checks
    that the code object is an AMDGPU ELF. Returns the written paths.
    """
    spec = resolve_target(target)
    kind = spec["kind"]
    if kind not in _DEVICE_KINDS:
        raise CodegenError(
            f"target {spec} has no device code: emit_source takes cuda, rocm or opencl"
        )
    executable = getattr(built, "executable", built)
    modules = _device_modules(getattr(executable, "mod", executable), _DEVICE_KINDS[kind], None)
    if not modules:
        raise CodegenError(
            f"the executable holds no {kind} device module; was it built for {spec}?"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for i, (module, parent) in enumerate(modules):
        stem = out / ("kernels" if len(modules) == 1 else f"kernels{i}")
        paths += _EMITTERS[kind](module, parent, stem, spec)
    return paths


def _device_modules(module: Any, kind: str, parent: Any) -> list[tuple[Any, Any]]:
    """(device module, the module importing it) pairs, depth first."""
    found = [(module, parent)] if module.kind == kind else []
    for imported in module.imports:
        found += _device_modules(imported, kind, module)
    return found


def _emit_cuda(module: Any, parent: Any, stem: Path, spec: dict[str, Any]) -> list[Path]:
    arch = spec.get("arch")
    if not arch:
        raise CodegenError(f'target {spec} names no GPU arch: add one, e.g. {{"arch": "sm_90"}}')
    source = stem.with_suffix(".cu")
    source.write_text(module.inspect_source(""))
    return [source, *compile_cuda(source, arch)]


def _emit_rocm(module: Any, parent: Any, stem: Path, spec: dict[str, Any]) -> list[Path]:
    llvm_ir, assembly, code = (stem.with_suffix(suffix) for suffix in (".ll", ".s", ".hsaco"))
    llvm_ir.write_text(module.inspect_source(""))
    assembly.write_text(module.inspect_source("asm"))
    siblings = [m for m in parent.imports if m.kind == module.kind]
    index = next(i for i, m in enumerate(siblings) if m.same_as(module))
    code.write_bytes(_code_objects(parent)[index])
    return [llvm_ir, assembly, code]


def _emit_opencl(module: Any, parent: Any, stem: Path, spec: dict[str, Any]) -> list[Path]:
    source = stem.with_suffix(".cl")
    source.write_text(module.inspect_source("cl"))
    return [source]


_EMITTERS = {"cuda": _emit_cuda, "rocm": _emit_rocm, "opencl": _emit_opencl}


def _code_objects(parent: Any) -> list[bytes]:
    """The AMDGPU ELF images of the ROCm modules that `parent` imports, in import order.

    A ROCm module has no binary accessor (inspect_source returns text, WriteToFile is
    unsupported), but TVM's import packing serializes each code object as a length-prefixed ELF.
    """
    import tvm_ffi

    blob = tvm_ffi.get_global_func("runtime.ModulePackImportsToTensor")(parent).numpy().tobytes()
    found: list[bytes] = []
    start = blob.find(b"\x7fELF")
    while start >= 8:
        (length,) = struct.unpack("<Q", blob[start - 8 : start])
        image = blob[start : start + length]
        if start + length <= len(blob) and elf_machine(image) == EM_AMDGPU:
            found.append(image)
            start += length - 1
        start = blob.find(b"\x7fELF", start + 1)
    if not found:
        raise CodegenError("no AMDGPU code object (ELF e_machine 224) found in the ROCm module")
    return found


def elf_machine(data: bytes) -> int | None:
    """The ELF `e_machine` of `data` (224 AMDGPU, 190 CUDA), or None if it is not an ELF."""
    if len(data) < 20 or data[:4] != b"\x7fELF":
        return None
    return struct.unpack("<H", data[18:20])[0]


def cuda_toolkit() -> Path:
    """The CUDA toolkit directory (the versioned one holding include/), found from nvcc."""
    candidates: list[Path] = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(Path(nvcc).resolve().parent.parent)
    candidates += [
        *sorted(Path("/usr/local").glob("cuda-*"), reverse=True),
        Path("/usr/local/cuda"),
    ]
    for root in candidates:
        if (root / "bin" / "nvcc").exists() and (root / "include" / "cuda_runtime.h").exists():
            return root.resolve()
    raise CodegenError("compiling CUDA kernels needs nvcc and the CUDA toolkit headers; none found")


def compile_cuda(source: Path, arch: str) -> list[Path]:
    """nvcc `source` (.cu) to PTX and a cubin for `arch` (e.g. sm_90) beside it."""
    toolkit = cuda_toolkit()
    ptx, cubin = source.with_suffix(".ptx"), source.with_suffix(".cubin")
    _nvcc(toolkit, ["--ptx", *_NVCC_FLAGS, f"-arch={arch}", "-o", str(ptx), str(source)])
    _nvcc(toolkit, ["--cubin", f"-arch={arch}", "-o", str(cubin), str(ptx)])
    return [ptx, cubin]


def _nvcc(toolkit: Path, args: list[str]) -> None:
    # a fixed environment: CUDA_PATH names the versioned toolkit (TVM and nvcc's tools look there)
    env = {"CUDA_PATH": str(toolkit), "PATH": f"{toolkit / 'bin'}:/usr/local/bin:/usr/bin:/bin"}
    cmd = [str(toolkit / "bin" / "nvcc"), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=_NVCC_TIMEOUT_S,
                              check=False)  # fmt: skip
    except subprocess.TimeoutExpired as err:
        raise CodegenError(f"nvcc took over {_NVCC_TIMEOUT_S} s: {' '.join(cmd)}") from err
    if proc.returncode != 0:
        raise CodegenError(f"nvcc failed ({' '.join(cmd)}):\n{proc.stdout}{proc.stderr}".rstrip())
