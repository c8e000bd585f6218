"""Process groups: join one from torchrun's environment (`init`) or start one (`launch`).

`launch(fn, world_size=4)` runs `fn` on fresh processes joined in a gloo group on loopback,
the same environment torchrun sets up (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). A rank that
raises, dies or hangs fails the whole run with one `DistributedError` that says what happened on
every rank; the surviving ranks' collectives fail by their timeout at the latest, never hang.
"""

from __future__ import annotations

import datetime
import os
import queue
import signal
import socket
import time
import traceback
from collections.abc import Callable
from typing import Any

from ember.distributed.errors import DistributedError

__all__ = ["init", "launch"]


def init(timeout: float = 60.0) -> tuple[int, int]:
    """Join the process group described by torchrun's environment variables (gloo).

    `timeout` bounds every collective: a peer that died or hangs fails it with a
    DistributedError after at most that many seconds. Returns (rank, world_size).
    """
    import torch.distributed as dist

    if not dist.is_initialized():
        try:
            dist.init_process_group(
                "gloo", init_method="env://", timeout=datetime.timedelta(seconds=timeout)
            )
        except (ValueError, RuntimeError) as err:
            raise DistributedError(
                f"cannot join the process group: {err}. Start ranks with torchrun or "
                "ember.distributed.launch, which set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT"
            ) from err
    return dist.get_rank(), dist.get_world_size()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _child(payload: bytes, rank: int, world: int, port: int, threads: int, timeout: float,
           results: Any) -> None:  # fmt: skip
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), TVM_NUM_THREADS=str(threads),
    )  # fmt: skip
    import cloudpickle
    import torch

    torch.set_num_threads(threads)
    try:
        fn, args = cloudpickle.loads(payload)
        init(timeout)
        results.put((rank, "ok", cloudpickle.dumps(fn(*args))))
    except BaseException as err:  # reported to the parent, which raises for the run
        kind = "error" if isinstance(err, Exception) else "interrupted"
        results.put((rank, kind, f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def launch(fn: Callable[..., Any], world_size: int, *args: Any, timeout: float = 30.0,
           deadline: float = 600.0, threads: int | None = None) -> list[Any]:  # fmt: skip
    """Run `fn(*args)` on `world_size` ranks; returns each rank's result in rank order.

    `fn` and its results travel by cloudpickle, so a local function works. `timeout` bounds each
    collective, `deadline` the whole run; `threads` is each rank's compute thread count
    (default: the cores split between the ranks). Raises DistributedError if any rank fails.
    """
    import multiprocessing

    import cloudpickle

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    port = _free_port()
    threads = threads or max(1, (os.cpu_count() or 1) // world_size)
    payload = cloudpickle.dumps((fn, args))
    procs = [
        ctx.Process(target=_child, args=(payload, r, world_size, port, threads, timeout, results))
        for r in range(world_size)
    ]
    for p in procs:
        p.start()
    outcome = _collect(procs, results, timeout, deadline)
    failures = {r: msg for r, (kind, msg) in outcome.items() if kind != "ok"}
    if failures:
        lines = "\n".join(f"  rank {r}: {m.splitlines()[0]}" for r, m in sorted(failures.items()))
        err = DistributedError(
            f"distributed run failed on {len(failures)} of {world_size} ranks:\n{lines}"
        )
        for r, m in sorted(failures.items()):
            err.add_note(f"--- rank {r} ---\n{m}")
        raise err
    return [cloudpickle.loads(outcome[r][1]) for r in range(world_size)]


def _collect(procs: list[Any], results: Any, timeout: float,
             deadline: float) -> dict[int, tuple[str, Any]]:  # fmt: skip
    """Every rank's (kind, payload); dead ranks get ("died", ...), stuck ones ("stuck", ...)."""
    outcome: dict[int, tuple[str, Any]] = {}
    end = time.monotonic() + deadline
    while len(outcome) < len(procs) and time.monotonic() < end:
        try:
            rank, kind, payload = results.get(timeout=0.1)
            outcome[rank] = (kind, payload)
            continue
        except queue.Empty:
            pass
        for rank, p in enumerate(procs):
            if rank not in outcome and not p.is_alive() and p.exitcode is not None:
                try:  # a result put just before exit may still be in the pipe
                    rank2, kind, payload = results.get(timeout=1.0)
                    outcome[rank2] = (kind, payload)
                    continue
                except queue.Empty:
                    outcome[rank] = ("died", _death(p.exitcode))
        if any(k != "ok" for k, _ in outcome.values()):  # the others fail by their timeout
            end = min(end, time.monotonic() + timeout + 15.0)
    for rank, p in enumerate(procs):
        if rank not in outcome:
            outcome[rank] = ("stuck", f"still running after the run failed; terminated ({p.pid})")
            p.terminate()
        p.join(5.0)
        if p.is_alive():
            p.kill()
    return outcome


def _death(exitcode: int) -> str:
    if exitcode < 0:
        return f"died: killed by {signal.Signals(-exitcode).name} before reporting a result"
    return f"died: exited with code {exitcode} before reporting a result"
