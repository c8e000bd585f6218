"""`ember serve --workers N`: the server's worker processes, restarted when they die.

Each worker is its own process (`ember service worker`), so a crash or a kill loses one lease,
never the server. A worker that dies is replaced after a short pause; its job is resumed by
whichever worker claims it once the lease expires.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Sequence

__all__ = ["Supervisor"]

log = logging.getLogger(__name__)

_RESTART_PAUSE_SEC = 2.0


class Supervisor:
    """Keeps `count` worker processes running `command` (argv after `ember`) until `stop()`."""

    def __init__(self, count: int, command: Sequence[str]) -> None:
        self.command = [sys.executable, "-m", "ember.cli", *command]
        self.processes: list[subprocess.Popen[bytes]] = []
        self._count = count
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        """Start the workers and the thread that restarts them."""
        self.processes = [subprocess.Popen(self.command) for _ in range(self._count)]
        self._thread.start()

    def _watch(self) -> None:
        while not self._stopped.wait(_RESTART_PAUSE_SEC):
            for i, process in enumerate(self.processes):
                if process.poll() is not None and not self._stopped.is_set():
                    log.warning("worker %d exited (%s): restarting it", process.pid,
                                process.returncode)  # fmt: skip
                    self.processes[i] = subprocess.Popen(self.command)

    def stop(self, timeout_sec: float = 30.0) -> None:
        """Ask every worker to stop (SIGTERM: running jobs go back to the queue) and wait."""
        self._stopped.set()
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout_sec)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
