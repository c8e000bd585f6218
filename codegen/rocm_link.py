"""The ROCm toolchain without a ROCm install: Debian's `ld.lld-N` and `rocm-device-libs`.

TVM's own callbacks look for /opt/rocm (or `hipcc`) and take the first `ld.lld` on PATH, which on
Debian 12 is lld 14: too old for the code-object ABI that TVM's LLVM emits. `use_system_toolchain`
replaces `tvm_callback_rocm_link` and `tvm_callback_rocm_bitcode_path` with ones that use the
newest versioned lld and the multiarch device-library directory.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

from ember.errors import CodegenError

__all__ = ["bitcode_dir", "find_lld", "use_system_toolchain"]

_OLDEST_LLD = 17  # code object v5/v6, which LLVM 17+ emits, is unknown to older lld
_BITCODE_DIRS = ("/usr/lib/*/amdgcn/bitcode", "/opt/rocm/amdgcn/bitcode", "/opt/rocm/lib")
_INSTALL_HINT = "install Debian's lld-19 and rocm-device-libs (.ci/install-system-deps.sh does)"


@cache
def find_lld() -> str:
    """The newest `ld.lld-N` (N >= 17) on PATH, else a plain `ld.lld`."""
    for major in range(30, _OLDEST_LLD - 1, -1):
        path = shutil.which(f"ld.lld-{major}")
        if path:
            return path
    path = shutil.which("ld.lld")
    if path is None:
        raise CodegenError(
            f"ROCm builds need ld.lld (version {_OLDEST_LLD} or newer): {_INSTALL_HINT}"
        )
    return path


@cache
def bitcode_dir() -> Path:
    """The directory holding the AMDGPU device libraries (ocml.bc, oclc_*.bc)."""
    for pattern in _BITCODE_DIRS:
        for found in sorted(glob.glob(pattern)):
            if (Path(found) / "ocml.bc").exists():
                return Path(found)
    raise CodegenError(f"ROCm builds need the AMDGPU device libraries (ocml.bc): {_INSTALL_HINT}")


def _link(object_code: bytearray) -> bytearray:
    """Relocatable AMDGPU object -> shared code object (hsaco), as TVM's callback does."""
    lld = find_lld()
    with tempfile.TemporaryDirectory(prefix="ember-rocm-") as tmp:
        obj, out = Path(tmp) / "kernels.o", Path(tmp) / "kernels.hsaco"
        obj.write_bytes(bytes(object_code))
        proc = subprocess.run([lld, "--no-undefined", "-shared", str(obj), "-o", str(out)],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if proc.returncode != 0:
            raise CodegenError(
                f"linking the AMDGPU code object with {lld} failed: {proc.stderr.strip()}\n"
                f"ROCm code objects need ld.lld {_OLDEST_LLD} or newer: {_INSTALL_HINT}"
            )
        return bytearray(out.read_bytes())


def _bitcode_paths(rocdl_dir: str | None = None) -> list[str]:
    from tvm.support import rocm

    return list(rocm.callback_rocm_bitcode_path(rocdl_dir or f"{bitcode_dir()}/"))


def use_system_toolchain() -> None:
    """Point TVM's ROCm link and device-library callbacks at the system's lld and bitcode.

    Fails early, with what to install, when either is missing.
    """
    import tvm.support.rocm  # noqa: F401  (registers TVM's callbacks first: ours override them)
    import tvm_ffi

    find_lld()
    bitcode_dir()
    tvm_ffi.register_global_func("tvm_callback_rocm_link", _link, override=True)
    tvm_ffi.register_global_func("tvm_callback_rocm_bitcode_path", _bitcode_paths, override=True)
