"""The tuning service under load: N job submissions from C concurrent clients over loopback.

    python -m benchmarks.service [--jobs 1000] [--clients 16] [--retry-every 10]

Starts a real `ember serve --workers 0` (the queue only: nothing is tuned) on a fresh SQLite
database and submits task-list jobs from C threads, each with its own HTTP connection. Every tenth
submission is sent twice with the same request_id, as a client retrying after a lost answer does.
Checks that every job was accepted exactly once (one job per request_id, the retry answered with
the same job and 200, the database holding exactly N jobs), then reports throughput and latency
percentiles. Baselines measured in the same run: `GET /v1/health` (the HTTP floor of this server)
and `JobQueue.submit` called in-process (the database floor, no HTTP). Loopback only, bounded in
count and time; the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks._harness import environment

TOKEN = "benchmark-token"
TARGET = {"kind": "llvm", "mcpu": "cooperlake", "num-cores": 2}
# a real MetaSchedule workload (16x16 scale): what `ember tune --service` sends per kernel
_TASK: dict[str, Any] = {}


def _task() -> dict[str, Any]:
    if not _TASK:
        import tvm
        from tvm import te
        from tvm.s_tir import meta_schedule as ms

        a = te.placeholder((16, 16), name="A")
        b = te.compute((16, 16), lambda i, j: a[i, j] * 2.0, name="B")
        mod = tvm.IRModule({"main": te.create_prim_func([a, b])})
        _TASK.update(name="scale", weight=1, workload=ms.database.Workload(mod).as_json())
    return _TASK


def _body(request_id: str) -> dict[str, Any]:
    return {"tasks": [_task()], "target": TARGET, "trials": 64, "request_id": request_id}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(database: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    argv = [sys.executable, "-m", "ember.cli", "serve", "--port", str(port), "--workers", "0",
            "--tuning-records", str(database)]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "EMBER_SERVICE_TOKEN": TOKEN})  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.3)
    raise RuntimeError(f"ember serve did not start:\n{log.read_text()}")


def _submit_all(url: str, jobs: int, clients: int, retry_every: int) -> dict[str, Any]:
    """Submit `jobs` jobs from `clients` threads; returns latencies, answers and errors."""
    next_index = iter(range(jobs))
    lock = threading.Lock()
    latencies: list[float] = []
    answers: dict[str, list[tuple[int, int]]] = {}  # request_id -> [(status, job id)]
    errors: list[str] = []

    def client() -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                request_id = uuid.uuid4().hex
                body = _body(request_id)
                for _ in range(2 if index % retry_every == 0 else 1):
                    start = time.perf_counter()
                    try:
                        response = http.post("/v1/jobs/tasks", json=body)
                    except httpx.HTTPError as err:
                        with lock:
                            errors.append(f"{type(err).__name__}: {err}")
                        continue
                    elapsed = time.perf_counter() - start
                    with lock:
                        latencies.append(elapsed)
                        if response.status_code not in (200, 201):
                            errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                        else:
                            answers.setdefault(request_id, []).append(
                                (response.status_code, response.json()["id"])
                            )

    _task()  # imports TVM once, before the clock starts
    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"seconds": time.perf_counter() - start, "latencies": latencies, "answers": answers,
            "errors": errors}  # fmt: skip


def _check(result: dict[str, Any], jobs: int, database: Path) -> list[str]:
    """What went wrong with 'every job accepted exactly once' (empty: nothing)."""
    problems = [f"{len(result['errors'])} failed requests, e.g. {result['errors'][:3]}"] * bool(
        result["errors"]
    )
    answers = result["answers"]
    if len(answers) != jobs:
        problems.append(f"{len(answers)} request ids answered, expected {jobs}")
    for request_id, got in answers.items():
        if got[0][0] != 201 or any(status != 200 for status, _ in got[1:]):
            problems.append(f"{request_id}: statuses {[s for s, _ in got]}, expected 201 then 200")
        if len({job for _, job in got}) != 1:
            problems.append(f"{request_id}: answered with different jobs {got}")
    ids = [got[0][1] for got in answers.values()]
    if len(set(ids)) != len(ids):
        problems.append("two request ids share a job")
    from ember.autotune.service.queue import JobQueue

    queue = JobQueue.open(str(database))
    ((stored,),) = queue.conn.query("SELECT COUNT(*) FROM ember_jobs")
    ((distinct,),) = queue.conn.query("SELECT COUNT(DISTINCT request_id) FROM ember_jobs")
    queue.close()
    if stored != jobs or distinct != jobs:
        problems.append(
            f"the database holds {stored} jobs ({distinct} request ids), expected {jobs}"
        )
    return problems


def _health_latencies(url: str, count: int) -> list[float]:
    times = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(count):
            start = time.perf_counter()
            http.get("/v1/health").raise_for_status()
            times.append(time.perf_counter() - start)
    return times


def _queue_latencies(directory: Path, count: int) -> list[float]:
    """The database floor: `JobQueue.submit` in this process, no HTTP."""
    from ember.autotune.service.queue import JobQueue, JobSpec

    queue = JobQueue.open(str(directory / "direct.db"))
    payload = json.dumps([_task()]).encode()
    times = []
    for _ in range(count):
        spec = JobSpec("tasks", TARGET, 64, request_id=uuid.uuid4().hex)
        start = time.perf_counter()
        queue.submit(spec, payload, "bench")
        times.append(time.perf_counter() - start)
    queue.close()
    return times


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "max_ms": float(ms.max()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--retry-every", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ember-bench-service-") as tmp:
        directory = Path(tmp)
        database = directory / "service.db"
        process, url = _start(database, directory / "serve.log")
        try:
            result = _submit_all(url, args.jobs, args.clients, args.retry_every)
            health = _health_latencies(url, 200)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
        problems = _check(result, args.jobs, database)
        direct = _queue_latencies(directory, 200)
    requests = len(result["latencies"])
    submit = _percentiles(result["latencies"])
    rows = {"POST /v1/jobs/tasks (under load)": submit, "GET /v1/health (sequential)":
            _percentiles(health), "JobQueue.submit in-process (no HTTP)": _percentiles(direct)}  # fmt: skip
    print(f"{args.jobs} jobs ({requests} requests with retries) from {args.clients} clients in "
          f"{result['seconds']:.2f} s: {args.jobs / result['seconds']:.0f} jobs/s, "
          f"{requests / result['seconds']:.0f} requests/s")  # fmt: skip
    print(f"{'':40} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, row in rows.items():
        print(f"{name:40} {row['p50_ms']:8.2f} {row['p90_ms']:8.2f} {row['p99_ms']:8.2f} "
              f"{row['max_ms']:8.2f}")  # fmt: skip
    floor = rows["JobQueue.submit in-process (no HTTP)"]["p50_ms"]
    print(f"p50 submit / p50 in-process queue submit: {submit['p50_ms'] / floor:.1f}x")
    print(
        "every job accepted exactly once"
        if not problems
        else "PROBLEMS:\n  " + "\n  ".join(problems[:20])
    )
    Path("bench-results").mkdir(exist_ok=True)
    with open("bench-results/service.jsonl", "a") as f:
        f.write(json.dumps({"case": "service-submit", "jobs": args.jobs, "clients": args.clients,
                            "requests": requests, "seconds": result["seconds"], "latency": rows,
                            "exactly_once": not problems, "env": environment()}) + "\n")  # fmt: skip
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
