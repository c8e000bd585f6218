"""A persistent pool of worker processes whose job timeout counts run time, never queueing time.

TVM's measurement pools start a job's clock before the job reaches a process that can run it: the
RPC runner counts the wait for a tracker session, and a builder pool recreated per batch counts each
fresh worker's start-up (40 s here: TVM_NOTES). Here workers start once, run `setup` (not timed),
and stay alive across batches. A job's clock starts when it is handed to an idle worker,
so jobs waiting for a worker never time out. A job over its time is ended by killing its worker
(SIGKILL works whatever the job is doing, a compiled kernel holding the GIL included), and a fresh
worker takes its place; a job that crashes its worker (a segfaulting kernel) fails alone too.

Workers are started with `spawn`: forking a process that has TVM's thread pool running is unsafe.
Jobs are module-level functions (pickled by reference) and picklable arguments. `blocked` modules
cannot be imported in the workers: `import tvm` also imports torch when it can (for DLPack), 2.3 s
instead of 7 s of start-up on this loaded machine, and building or timing a kernel never needs it.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from ember.errors import TuningError

__all__ = ["Outcome", "WorkerPool"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """One job's result: its return value, or an error message; `seconds` is its run time."""

    value: Any = None
    error: str | None = None
    seconds: float = 0.0


def _serve(conn: Connection, setup: str | None, blocked: tuple[str, ...]) -> None:
    """A worker's loop: set up, say ready, then run (fn, args) jobs until told to stop."""
    for name in blocked:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # None: imports raise
    if setup is not None:
        module, _, function = setup.partition(":")
        getattr(importlib.import_module(module), function)()
    conn.send(("ready", None))
    while True:
        job = conn.recv()
        if job is None:
            return
        fn, args = job
        try:
            conn.send(("ok", fn(*args)))
        except Exception as err:  # the job's failure is its result; the worker lives on
            conn.send(("error", f"{type(err).__name__}: {err}"))


class _Worker:
    """One process, its end of the pipe, and the job it runs (None when idle or starting)."""

    def __init__(self, context: Any, setup: str | None, blocked: tuple[str, ...]) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, setup, blocked), daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.job: int | None = None
        self.started = 0.0

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()


class WorkerPool:
    """`workers` persistent processes; `map` runs jobs on them with a per-job run-time limit.

    Each worker calls `setup` ("module:function", named so that torch can be blocked before
    the module is imported) before it takes jobs, so no job's clock counts imports and first-use
    initialization, and cannot import `blocked`.
    """

    def __init__(
        self,
        workers: int,
        *,
        timeout_sec: float,
        setup: str | None = None,
        blocked: tuple[str, ...] = (),
    ) -> None:
        if workers < 1:
            raise TuningError(f"a worker pool needs at least 1 worker, got {workers}")
        self.timeout_sec = timeout_sec
        self._modules = (setup, blocked)
        self._context = multiprocessing.get_context("spawn")
        self._workers = [self._start() for _ in range(workers)]

    def _start(self) -> _Worker:
        return _Worker(self._context, *self._modules)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers."""
        for worker in self._workers:
            if worker.ready and worker.job is None:
                try:
                    worker.conn.send(None)
                    worker.process.join(timeout=5)
                except OSError:  # already gone
                    pass
            if worker.process.is_alive():
                worker.kill()
        self._workers = []

    def map(self, fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]]) -> list[Outcome]:
        """`fn(*args)` for each args in `jobs`, in order; failures and timeouts are Outcomes."""
        if not self._workers:
            raise TuningError("the worker pool is closed")
        queue = deque(enumerate(jobs))
        outcomes: list[Outcome | None] = [None] * len(jobs)
        while queue or any(w.job is not None for w in self._workers):
            for worker in self._workers:
                if worker.ready and worker.job is None and queue:
                    worker.job, args = queue.popleft()
                    worker.conn.send((fn, args))
                    worker.started = time.monotonic()  # the clock starts here, not at map()
            self._collect(outcomes)
            self._expire(outcomes)
        return [o if o is not None else Outcome(error="lost") for o in outcomes]

    def _collect(self, outcomes: list[Outcome | None]) -> None:
        """Wait until a worker answers or the earliest running job's time is up."""
        busy = [w for w in self._workers if w.job is not None]
        deadline = min((w.started + self.timeout_sec for w in busy), default=None)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        answered = wait([w.conn for w in self._workers], timeout=timeout)
        for worker in [w for w in self._workers if w.conn in answered]:
            try:
                kind, value = worker.conn.recv()
            except (EOFError, OSError):
                self._replace(worker, outcomes, "its worker process died (exit code {code})")
                continue
            if kind == "ready":
                worker.ready = True
                continue
            assert worker.job is not None  # only a busy worker answers with a result
            seconds = time.monotonic() - worker.started
            outcomes[worker.job] = (
                Outcome(value=value, seconds=seconds)
                if kind == "ok"
                else Outcome(error=value, seconds=seconds)
            )
            worker.job = None

    def _expire(self, outcomes: list[Outcome | None]) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.job is not None and now - worker.started > self.timeout_sec:
                self._replace(worker, outcomes, f"timed out: ran over {self.timeout_sec:g} s")

    def _replace(self, worker: _Worker, outcomes: list[Outcome | None], reason: str) -> None:
        """Kill `worker`, fail its job with `reason`, and start a fresh worker in its place."""
        if worker.job is None and not worker.ready:
            code = worker.process.exitcode
            worker.kill()
            self._workers.remove(worker)
            raise TuningError(
                f"a measurement worker process exited while starting (exit code {code}); "
                f"run with --workers 0 to build and measure in this process"
            )
        worker.kill()
        if worker.job is not None:
            seconds = time.monotonic() - worker.started
            message = reason.format(code=worker.process.exitcode)
            outcomes[worker.job] = Outcome(error=message, seconds=seconds)
            log.info("job %d %s", worker.job, message)
        self._workers[self._workers.index(worker)] = self._start()
