"""A tuning-service worker: takes jobs from the queue and tunes them into the tuning database.

It holds each job under a lease that a background thread renews. Every progress report is fenced
by the lease: once the lease is lost (the job was cancelled, or this worker stalled and another
took the job) the next report raises and the worker drops the job without touching it further.
Records are committed as they are measured, so whoever resumes the job starts from them. Run
several workers (`ember serve --workers N`, or `ember service worker` on other hosts sharing a
PostgreSQL database) to tune several jobs at once; each measures on the devices of its RPC tracker.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ember.autotune.service.queue import Job, JobQueue

__all__ = ["Worker", "WorkerConfig"]

log = logging.getLogger(__name__)


class _LeaseLost(Exception):
    """The job's lease is gone: stop and leave it to its new owner."""


class _Stopping(Exception):
    """The worker was asked to stop: hand the job back."""


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs: the database, an optional RPC tracker (HOST:PORT), its lease."""

    database: str
    rpc_tracker: str | None = None
    lease_sec: float = 30.0
    poll_sec: float = 1.0
    cost_model: str = "ember"  # "ember", "xgb" or "random"
    timeout_sec: float = 10.0
    max_attempts: int = 3


class Worker:
    """Takes jobs one at a time until `stop` is set."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.queue = JobQueue.open(config.database)
        self.stop = threading.Event()

    def run(self) -> None:
        """Claim and tune jobs until `stop` is set."""
        log.info("worker %s on %s", self.id, self.queue.conn.url)
        while not self.stop.is_set():
            job = self.queue.claim(self.id, self.config.lease_sec, self.config.max_attempts)
            if job is None:
                self.stop.wait(self.config.poll_sec)
            else:
                self.run_job(job)

    def run_job(self, job: Job) -> None:
        """Tune one claimed job to its end, or until its lease is lost."""
        lost = threading.Event()
        beat = threading.Thread(target=self._renew, args=(job.id, lost), daemon=True)
        beat.start()
        log.info("job %d (attempt %d): %s trials for %s", job.id, job.attempts, job.trials,
                 job.target)  # fmt: skip
        try:
            self._tune(job, lost)
        except Exception as err:
            if lost.is_set():
                log.warning("job %d: lease lost, dropped (%s)", job.id, type(err).__name__)
            elif self.stop.is_set():
                log.warning("job %d: worker stopping, job handed back to the queue", job.id)
                self.queue.release(job.id, self.id)
            else:
                log.exception("job %d failed", job.id)
                self.queue.finish(job.id, self.id, f"{type(err).__name__}: {err}")
        else:
            self.queue.finish(job.id, self.id)
        finally:
            lost.set()  # stops the renewing thread
            beat.join()

    def _renew(self, job_id: int, lost: threading.Event) -> None:
        while not lost.wait(self.config.lease_sec / 3):
            if not self.queue.renew(job_id, self.id, self.config.lease_sec):
                lost.set()

    def _tune(self, job: Job, lost: threading.Event) -> None:
        from ember.autotune.database import TuningDatabase
        from ember.autotune.ms_database import MetaScheduleDatabase

        tasks, graph = _job_tasks(job, self.queue.payload(job.id))
        described = [_describe(t) for t in tasks]
        if not self.queue.set_tasks(job.id, self.id, described):
            raise _LeaseLost
        with TuningDatabase.open(self.config.database) as db:
            database = MetaScheduleDatabase(db, job.target)

            def progress(measured: int, planned: int) -> None:
                best = _model_ms(db, described, job.target)
                if self.stop.is_set():
                    raise _Stopping
                if lost.is_set() or not self.queue.progress(
                    job.id, self.id, measured, planned, best
                ):
                    lost.set()
                    raise _LeaseLost

            self._search(job, tasks, graph, database, progress)

    def _search(self, job: Job, tasks: list[Any], graph: Any, database: Any, progress: Any) -> None:
        from ember.autotune.measure import Tracker
        from ember.autotune.service.task_tuning import tune_task_list
        from ember.autotune.tune import tune
        from ember.errors import TuningError

        tracker = None
        if job.rpc_key:
            if self.config.rpc_tracker is None:
                raise TuningError(
                    f"the job asks for RPC devices {job.rpc_key!r} but this worker has no "
                    "--rpc-tracker: start `ember serve`/`ember service worker` with one"
                )
            tracker = Tracker.parse(self.config.rpc_tracker, job.rpc_key)
        common = {"trials": job.trials, "trials_per_task": job.trials_per_task,
                  "database": database, "tracker": tracker, "progress": progress}  # fmt: skip
        if graph is not None:
            tune(graph, job.target, cost_model=self.config.cost_model, workers=0,
                 timeout_sec=self.config.timeout_sec, **common)  # fmt: skip
        else:
            tune_task_list(tasks, job.target, cost_model=self.config.cost_model,
                           timeout_sec=self.config.timeout_sec, **common)  # fmt: skip


def _job_tasks(job: Job, payload: bytes) -> tuple[list[Any], Any]:
    """The job's tasks, and its optimized graph for model jobs (None for task lists)."""
    from ember.autotune.tasks import extract_tasks

    if job.kind == "tasks":
        from ember.autotune.service.task_tuning import tasks_from_json

        return tasks_from_json(payload), None
    from ember.model_files import load_model, parse_input_shapes
    from ember.passes import run_pipeline

    with tempfile.TemporaryDirectory(prefix="ember-job-") as tmp:
        path = Path(tmp) / Path(job.filename or "model.onnx").name
        path.write_bytes(payload)
        source = load_model(str(path), parse_input_shapes(job.input_shapes), {})
    graph, _ = run_pipeline(source.graph)
    return extract_tasks(graph, job.target), graph


def _describe(task: Any) -> dict[str, Any]:
    """What the job shows of a task; `symbolic_hash` names the kernel its schedule is replayed
    onto when the model has symbolic dims (None otherwise)."""
    return {
        "name": task.name,
        "weight": task.weight,
        "structural_hash": _hash(task.mod),
        "symbolic_hash": None if task.symbolic is None else _hash(task.symbolic),
    }


def _hash(mod: Any) -> str:
    import tvm_ffi

    return str(tvm_ffi.structural_hash(mod))


def _model_ms(db: Any, tasks: list[dict[str, Any]], target: dict[str, Any]) -> float | None:
    """Sum over tasks of weight x best measured ms; None until every task has a record."""
    total = 0.0
    for task in tasks:
        best = db.best(task["structural_hash"], target)
        if not best or best[0].mean_secs is None:
            return None
        total += task["weight"] * best[0].mean_secs * 1e3
    return total


def main(config: WorkerConfig) -> None:
    """Run a worker until SIGTERM/SIGINT."""
    import signal

    worker = Worker(config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop.set())
    try:
        worker.run()
    finally:
        worker.queue.close()
