"""Run a compiled Relax executable: arrays in (numpy, torch or anything with DLPack), TVM tensors
out. Imports only numpy and the TVM runtime, so a deployed model needs nothing else."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ember.errors import EmberError, InputError
from ember.runtime.threads import size_thread_pool

__all__ = ["Executor", "device_for", "to_tvm", "writable"]

_ALIGNMENT = 64  # TVM's kernels assume 64-byte aligned buffers


def to_tvm(array: Any, device: Any) -> Any:
    """A TVM tensor for `array`: zero-copy through DLPack when aligned and contiguous."""
    import tvm

    if isinstance(array, tvm.runtime.Tensor):
        return array
    # Borrowing can fail for many reasons (misaligned, strided, an exotic dtype); every failure
    # falls back to a copy, which is always correct.
    if hasattr(array, "__dlpack__") and not isinstance(array, np.ndarray | np.generic):
        try:
            return tvm.runtime.from_dlpack(array)
        except Exception:
            array = array.contiguous() if hasattr(array, "contiguous") else array
            array = array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)
    array = np.asarray(array)
    if array.flags.c_contiguous and array.ctypes.data % _ALIGNMENT == 0 and array.size:
        try:
            return tvm.runtime.from_dlpack(array)
        except Exception:
            pass
    return tvm.runtime.tensor(np.array(array, order="C"), device)  # keeps 0-d arrays 0-d


def writable(array: Any, name: str) -> Any:
    """`array` as a TVM tensor over the same memory, for a kernel to write into; InputError when
    that needs a copy (strided, misaligned, not on the CPU)."""
    import tvm

    if isinstance(array, tvm.runtime.Tensor):
        return array
    try:
        return tvm.runtime.from_dlpack(array)
    except Exception as err:  # TVM's DLPack import rejects what it cannot borrow as is
        raise InputError(
            f"{name}: a program writes its outputs into it, so it must be a contiguous, 64-byte "
            f"aligned CPU tensor it can borrow ({type(err).__name__}: {err}); pass a fresh "
            f"array, or contiguous rows of one"
        ) from err


class Executor:
    """A Relax VM over one executable, calling its `main` function."""

    def __init__(
        self, executable: Any, device: str | None = None, *, target: Mapping[str, Any] | None = None
    ) -> None:
        """`device` defaults to the one the executable was built for; `target` (the build's
        target dict) only makes the error for a missing GPU name its arch."""
        from tvm.runtime.vm import VirtualMachine

        size_thread_pool()
        self.executable = executable
        self.device = device_for(executable, target, device)
        self.vm = VirtualMachine(executable, self.device)
        self._main = self.vm["main"]

    def run(self, arrays: Sequence[Any]) -> list[Any]:
        """Call `main`; returns the output TVM tensors (caller converts)."""
        result = self._main(*(to_tvm(a, self.device) for a in arrays))
        return list(result)


# TVM device-module kind -> (TVM device name, what users call it)
_GPU_MODULES = {
    "cuda": ("cuda", "CUDA"),
    "hip": ("rocm", "ROCm"),
    "opencl": ("opencl", "OpenCL"),
    "vulkan": ("vulkan", "Vulkan"),
    "metal": ("metal", "Metal"),
}


def device_for(
    executable: Any, target: Mapping[str, Any] | None = None, device: str | None = None
) -> Any:
    """The TVM device to run `executable` (a Relax executable or loaded module) on.

    Raises EmberError when it was built for a GPU this machine lacks, or `device` is not the kind
    it was built for.
    """
    import tvm

    built = _gpu_kind(getattr(executable, "mod", executable))
    expected = _GPU_MODULES[built][0] if built else "cpu"
    wanted = device or expected
    if wanted != expected:
        raise EmberError(
            f"this model was built for {_describe(expected, target)} and cannot run on {wanted}; "
            f"compile it again for that device (--target {'llvm' if wanted == 'cpu' else wanted})"
        )
    dev = tvm.cpu() if wanted == "cpu" else tvm.device(wanted)
    if not dev.exist:
        label = _GPU_MODULES[built][1] if built else wanted.upper()
        raise EmberError(
            f"this model was built for {_describe(wanted, target)} but no {label} device is "
            f"present; compile with --target llvm to run on this CPU, or copy the .so to a machine "
            f"with that GPU"
        )
    return dev


def _gpu_kind(module: Any) -> str | None:
    """The kind of the first GPU module that `module` imports (depth first), if any."""
    if module.kind in _GPU_MODULES:
        return module.kind
    return next((k for m in module.imports if (k := _gpu_kind(m))), None)


def _describe(device: str, target: Mapping[str, Any] | None) -> str:
    arch = (target or {}).get("arch") or (target or {}).get("mcpu")
    return f"{device} ({arch})" if arch and device != "cpu" else device
