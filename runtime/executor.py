"""Run a compiled Relax executable: arrays in (numpy, torch or anything with DLPack), TVM tensors
out. Imports only numpy and the TVM runtime, so a deployed model needs nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["Executor", "to_tvm"]

_ALIGNMENT = 64  # TVM's kernels assume 64-byte aligned buffers


def to_tvm(array: Any, device: Any) -> Any:
    """A TVM tensor for `array`: zero-copy through DLPack when aligned and contiguous."""
    import tvm

    if isinstance(array, tvm.runtime.Tensor):
        return array
    if hasattr(array, "__dlpack__") and not isinstance(array, np.ndarray | np.generic):
        try:
            return tvm.runtime.from_dlpack(array)
        except (ValueError, RuntimeError, TypeError, tvm.error.TVMError):
            array = array.contiguous() if hasattr(array, "contiguous") else array
            array = array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)
    array = np.asarray(array)
    if array.flags.c_contiguous and array.ctypes.data % _ALIGNMENT == 0 and array.size:
        try:
            return tvm.runtime.from_dlpack(array)
        except (ValueError, RuntimeError, TypeError, BufferError, tvm.error.TVMError):
            pass
    return tvm.runtime.tensor(np.ascontiguousarray(array), device)


class Executor:
    """A Relax VM over one executable, calling its `main` function."""

    def __init__(self, executable: Any, device: str = "cpu") -> None:
        import tvm
        from tvm.runtime.vm import VirtualMachine

        self.device = tvm.cpu() if device == "cpu" else tvm.device(device)
        self.vm = VirtualMachine(executable, self.device)
        self._main = self.vm["main"]

    def run(self, arrays: Sequence[Any]) -> list[Any]:
        """Call `main`; returns the output TVM tensors (caller converts)."""
        result = self._main(*(to_tvm(a, self.device) for a in arrays))
        return list(result)
