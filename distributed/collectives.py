"""The collectives compiled programs call: TVM global functions around torch.distributed.

`ember.distributed.exchange_counts`, `...all_to_all_start` and `...all_to_all_wait` are
registered when this module is imported. Tensors cross between TVM and torch by DLPack. Each
all-to-all is `torch.distributed.all_to_all_single(async_op=True)`; the start returns a handle,
the wait blocks on it for at most the group's timeout. Every start and wait is timestamped in `TRACE`,
from which benchmarks compute how much communication was hidden behind computation.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import tvm

from ember.distributed.errors import DistributedError

__all__ = [
    "FAILURES",
    "TRACE",
    "CommRecord",
    "all_to_all_start",
    "all_to_all_wait",
    "exchange_counts",
]


@dataclass
class CommRecord:
    """One collective: when it was started, when the program began and ended waiting for it."""

    phase: str
    nbytes: int
    start: float
    wait_begin: float = 0.0
    wait_end: float = 0.0

    @property
    def exposed(self) -> float:
        """Seconds the program sat blocked on this collective."""
        return self.wait_end - self.wait_begin


TRACE: list[CommRecord] = []
FAILURES: list[DistributedError] = []
_PENDING: dict[int, tuple[Any, torch.Tensor, torch.Tensor, CommRecord]] = {}
_IDS = itertools.count(1)


def _torch(x: Any) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_dlpack(x)


def _failed(what: str, err: BaseException) -> DistributedError:
    """The error for a failed collective; also kept in FAILURES, since the VM hands errors
    raised inside a global function back to its caller as plain RuntimeErrors."""
    rank = dist.get_rank() if dist.is_initialized() else "?"
    failure = DistributedError(
        f"rank {rank}: {what} failed: {str(err).strip().splitlines()[0] if str(err) else err!r}"
        " - another rank died, timed out or ran a different program; see that rank's error"
    )
    FAILURES.append(failure)
    return failure


def exchange_counts(counts: Any) -> np.ndarray:
    """counts (E,) -> (world, E / world): what every rank sends to this rank's experts."""
    send = _torch(counts).to(torch.int64).contiguous()
    world = dist.get_world_size()
    recv = torch.empty_like(send)
    record = CommRecord("counts", send.nbytes * 2, time.perf_counter())
    record.wait_begin = record.start  # synchronous: all of it is exposed
    try:
        work = dist.all_to_all_single(recv, send, async_op=True)
        work.wait()  # bounded by the group's timeout
    except Exception as err:
        raise _failed("the token-count exchange", err) from err
    record.wait_end = time.perf_counter()
    TRACE.append(record)
    return recv.reshape(world, -1).numpy()


def all_to_all_start(x: Any, send: Any, recv: Any, phase: str) -> np.ndarray:
    """Start all_to_all_single of x's rows with the given splits; returns an i64[1] handle."""
    rows = _torch(x).clone()  # the VM may reuse x's storage before the transfer ends
    send_splits = _torch(send).tolist()
    recv_splits = _torch(recv).tolist()
    out = rows.new_empty((int(sum(recv_splits)), rows.shape[1]))
    record = CommRecord(str(phase), rows.nbytes + out.nbytes, time.perf_counter())
    try:
        work = dist.all_to_all_single(out, rows, recv_splits, send_splits, async_op=True)
    except Exception as err:
        raise _failed(f"starting the {phase} all-to-all", err) from err
    handle = next(_IDS)
    _PENDING[handle] = (work, out, rows, record)
    return np.array([handle], dtype=np.int64)


def all_to_all_wait(handle: Any) -> torch.Tensor:
    """Block until the all-to-all behind `handle` is done; returns the received rows."""
    work, out, _, record = _PENDING.pop(int(_torch(handle)[0]))
    record.wait_begin = time.perf_counter()
    try:
        work.wait()  # bounded by the group's timeout
    except Exception as err:
        raise _failed(f"the {record.phase} all-to-all", err) from err
    record.wait_end = time.perf_counter()
    TRACE.append(record)
    return out


def _to_tvm(result: Any) -> Any:
    if isinstance(result, np.ndarray):  # small (handles, counts): copied, TVM wants alignment
        return tvm.runtime.tensor(result)
    return tvm.runtime.from_dlpack(result)  # torch allocates 64-byte aligned


@tvm.register_global_func("ember.distributed.exchange_counts", override=True)
def _exchange_counts(counts: Any) -> Any:
    return _to_tvm(exchange_counts(counts))


@tvm.register_global_func("ember.distributed.all_to_all_start", override=True)
def _all_to_all_start(x: Any, send: Any, recv: Any, phase: Any) -> Any:
    return _to_tvm(all_to_all_start(x, send, recv, str(phase)))


@tvm.register_global_func("ember.distributed.all_to_all_wait", override=True)
def _all_to_all_wait(handle: Any) -> Any:
    return _to_tvm(all_to_all_wait(handle))
