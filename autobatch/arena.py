"""Where a round's results live: one contiguous buffer per output signature (shape and dtype),
shared by every block and depth of the round. Each launch's kernel writes its outputs into the
next free rows, so the consumers of values made by different blocks and depths (TreeLSTM
children: leaves and nodes of several depths) still read them from one buffer through gather
indices, in place. A launch's rows start 64-byte aligned, as TVM requires of a tensor.

The memory (up to SPARE_MAX_BYTES per signature) is kept and reused by later rounds and runs
once no `Buffer` carved from it is alive (results leave a run as copies; only a `LazyValue`
kept past its run keeps a buffer): a fresh TreeLSTM arena (5 MB) took ~1,250 page faults,
about 2.6 ms on this VM, whenever the allocator had handed the last one back to the OS, which
it did when other work (eager PyTorch, DyNet) ran between two `ab.run`s.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from ember.autobatch.kernel import ArgSpec

__all__ = ["Arena", "Buffer"]

_ALIGN = 64  # bytes: TVM's alignment of tensor data


class Buffer:
    """A contiguous [rows, ...] tensor for `rows` values of one spec, seen three ways: torch,
    numpy (copies into and out of it, and the kernels' output views: a numpy slice costs a
    third of a torch one) and TVM (a kernel input), all without copying."""

    __slots__ = ("__weakref__", "_device", "host", "torch")

    def __init__(self, spec: ArgSpec, rows: int) -> None:
        self.host = _memory(spec.shape[1:], spec.dtype, rows, self)
        self.torch = torch.from_numpy(self.host)
        self._device: Any = None

    def device(self) -> Any:
        """The TVM tensor over the same memory (made once)."""
        if self._device is None:
            import tvm

            self._device = tvm.runtime.from_dlpack(self.torch)
        return self._device

    def rows(self, first: int, n: int) -> Any:
        """Rows [first, first + n) as a TVM tensor over the same memory (a kernel's output)."""
        import tvm

        return tvm.runtime.from_dlpack(self.host[first : first + n])  # numpy slices cost less


class Arena:
    """The buffers of one round, sized up front from its recorded (block, depth) groups, the
    round's gather indices (one int64 buffer: a launch's index arrays are views of it) and the
    batches its launches uploaded (Python-made arguments, stacked: kernels inlining those calls
    again read them there)."""

    def __init__(self, groups: Iterable[tuple[Any, int]]) -> None:
        """`groups`: (block, number of calls) for every group the round will launch."""
        rows: dict[ArgSpec, int] = {}
        indices = 0
        for block, n in groups:
            for spec in block.out_specs:
                rows[spec] = rows.get(spec, 0) + n + _align_rows(spec) - 1
            # an index per argument (an inlined block's own arguments may need more: see index)
            indices += len(block.arg_specs) * (n + _INDEX_ALIGN - 1)
        self.buffers = {spec: Buffer(spec, n) for spec, n in rows.items()}
        self.used = dict.fromkeys(rows, 0)
        self._index = _memory((), torch.int64, indices, self)
        self._index_address, self._index_used = self._index.ctypes.data, 0
        # id(a launch's outputs list) -> the batches it uploaded, by argument index
        self.uploads: dict[int, dict[int, torch.Tensor]] = {}

    def place(self, spec: ArgSpec, n: int) -> tuple[Buffer, int]:
        """Reserve `n` rows for one output of a launch: the buffer and the first row."""
        align = _align_rows(spec)
        first = -(-self.used[spec] // align) * align
        self.used[spec] = first + n
        return self.buffers[spec], first

    def index(self, n: int) -> tuple[np.ndarray, int]:
        """A 64-byte aligned int64 array of `n` rows for one gather, and its address."""
        first = -(-self._index_used // _INDEX_ALIGN) * _INDEX_ALIGN
        if first + n > len(self._index):  # more than sized for: fresh memory (views stay valid)
            self._index = torch.empty(max(n, len(self._index)), dtype=torch.int64).numpy()
            self._index_address, first = self._index.ctypes.data, 0
        self._index_used = first + n
        return self._index[first : first + n], self._index_address + 8 * first


_INDEX_ALIGN = _ALIGN // 8  # int64 indices per 64 bytes

SPARE_MAX_BYTES = 64 << 20
# (row shape, dtype) -> the memory last handed out for it and a weak reference to its user
_SPARE: dict[tuple[tuple[int, ...], torch.dtype], tuple[np.ndarray, weakref.ref[Any]]] = {}
_SPARE_LOCK = threading.Lock()  # two threads' ab.runs must not both take the same memory


def _memory(row: tuple[int, ...], dtype: torch.dtype, rows: int, user: Any) -> np.ndarray:
    """A 64-byte aligned [rows, *row] array for `user`: the spare memory for (row, dtype) if it
    is big enough and its last user is gone, else new memory that becomes the spare (unless it
    is bigger than SPARE_MAX_BYTES: a process keeps no more than that per signature)."""
    key = (row, dtype)
    with _SPARE_LOCK:
        memory, last = _SPARE.get(key, (None, None))
        if memory is None or len(memory) < rows or last() is not None:
            # a quarter more: the next run's groups are often a little bigger
            memory = torch.empty((rows + rows // 4, *row), dtype=dtype).numpy()
        if memory.nbytes <= SPARE_MAX_BYTES:
            _SPARE[key] = (memory, weakref.ref(user))
        return memory[:rows]


def _align_rows(spec: ArgSpec) -> int:
    """Rows per 64-byte boundary (torch allocates buffers 64-byte aligned)."""
    row_bytes = math.prod(spec.shape[1:]) * spec.dtype.itemsize
    return _ALIGN // math.gcd(row_bytes, _ALIGN)
