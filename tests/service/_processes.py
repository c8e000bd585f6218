"""Real processes for the service tests: `ember serve`, `ember service worker`, a TVM RPC tracker
with one `rpc_server`, all on loopback, each in its own session so a test can kill it (and its
children) without touching anything else."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = [
    "RPC_KEY",
    "TOKEN",
    "Server",
    "free_port",
    "rpc_tracker",
    "service",
    "start",
    "stop",
    "worker",
]

TOKEN = "test-token-0123456789"
RPC_KEY = "ember-service-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A process in its own session, its output in `log`."""
    environment = {**os.environ, "EMBER_SERVICE_TOKEN": TOKEN, **(env or {})}
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=environment,
                                start_new_session=True)  # fmt: skip


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Signal the process's whole session and wait for it."""
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass(frozen=True)
class Server:
    """A running `ember serve`."""

    url: str
    database: str  # a SQLite path or a postgresql:// URL
    process: subprocess.Popen
    log: Path

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def _wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ember serve exited {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"ember serve did not answer at {url}:\n{log.read_text()}")


@contextmanager
def service(tmp: Path, *, workers: int = 0, extra: Sequence[str] = (),
            database: str | None = None) -> Iterator[Server]:  # fmt: skip
    """`ember serve` on a free loopback port; a fresh SQLite database unless `database` is given."""
    tmp.mkdir(parents=True, exist_ok=True)
    port, log = free_port(), tmp / "serve.log"
    database = database or str(tmp / "service.db")
    argv = [sys.executable, "-m", "ember.cli", "serve", "--port", str(port),
            "--tuning-records", str(database), "--workers", str(workers), *extra]  # fmt: skip
    process = start(argv, log)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, process, log)
        yield Server(url, database, process, log)
    finally:
        stop(process)


def worker(database: str, log: Path, *extra: str) -> subprocess.Popen:
    """A stand-alone `ember service worker` on the database."""
    argv = [sys.executable, "-m", "ember.cli", "service", "worker", "--tuning-records",
            str(database), *extra]  # fmt: skip
    return start(argv, log)


def _wait_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"RPC tracker did not listen on {port}")


def _wait_registered(port: int) -> None:
    from tvm import rpc

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        summary = rpc.connect_tracker("127.0.0.1", port).summary()
        if any(RPC_KEY in str(queue) for queue in summary.get("server_info", [])):
            return
        time.sleep(0.5)
    raise RuntimeError(f"no RPC server registered {RPC_KEY!r}")


@contextmanager
def rpc_tracker(tmp: Path) -> Iterator[str]:
    """`python -m tvm.exec.rpc_tracker` and one `rpc_server` (key RPC_KEY); yields HOST:PORT."""
    port = free_port()
    log = tmp / "rpc.log"
    tracker = start([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1",
                     "--port", str(port), "--port-end", str(port + 1)], log)  # fmt: skip
    server = None
    try:
        _wait_port(port, tracker)
        server = start([sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1",
                        "--tracker", f"127.0.0.1:{port}", "--key", RPC_KEY], log)  # fmt: skip
        _wait_registered(port)
        yield f"127.0.0.1:{port}"
    finally:
        for process in (server, tracker):
            if process is not None:
                stop(process)
