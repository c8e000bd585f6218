"""schemathesis fuzzes every operation of the OpenAPI spec of a real `ember serve` (with a token,
and following the spec's links from submitted jobs): no answer may be a 5xx, and the server log
holds no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.service._processes import TOKEN, service


def test_no_request_gets_a_server_error(tmp_path):
    if not _importable("schemathesis"):
        pytest.skip("schemathesis is not installed (pip install 'ember[dev]')")
    with service(tmp_path, extra=["--max-upload-mb", "1"]) as server:
        argv = [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
                "--checks", "not_a_server_error", "--header", f"Authorization: Bearer {TOKEN}",
                "--max-examples", "10", "--seed", "0", "--request-timeout", "60"]  # fmt: skip
        run = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=tmp_path)
        log = server.log.read_text()
    assert run.returncode == 0, run.stdout[-4000:]
    assert " passed" in run.stdout
    assert "Traceback" not in log


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
