"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol: open a page, read
values from it with JavaScript, take a screenshot."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["Browser", "browser", "missing_reason"]


def missing_reason() -> str | None:
    """Why no browser can run here, or None."""
    if shutil.which("chromium") is None:
        return "chromium is missing: apt-get install chromium (.ci/install-system-deps.sh)"
    try:
        import websockets.sync.client  # noqa: F401
    except ImportError:
        return "websockets is not installed (pip install 'ember[dev]')"
    return None


class Browser:
    """One page of a headless Chromium."""

    def __init__(self, socket: Any) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    def _send(self, method: str, **params: Any) -> dict[str, Any]:
        call = next(self._ids)
        self._socket.send(json.dumps({"id": call, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=60))
            if message.get("id") == call:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def open(self, url: str) -> None:
        self._send("Page.enable")
        self._send("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        result = self._send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_sec: float = 60.0) -> Any:
        """Poll until the expression is truthy; returns its value."""
        deadline = time.monotonic() + timeout_sec
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"the page never satisfied {expression!r}")

    def screenshot(self, path: Path) -> Path:
        data = self._send("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path


@contextmanager
def browser() -> Iterator[Browser]:
    """A headless Chromium with a fresh profile, stopped at the end."""
    from websockets.sync.client import connect

    profile = Path(tempfile.mkdtemp(prefix="ember-chromium-"))
    argv = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1200,900",
            "about:blank"]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        import httpx

        pages = httpx.get(f"http://127.0.0.1:{port}/json/list").json()
        page = next(p for p in pages if p["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=None) as socket:
            yield Browser(socket)
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)
