"""Several `ember serve` processes on one PostgreSQL database (a real server the test starts):
they share one queue, so a job submitted to one is seen by the other, and a request retried
against another server is still accepted once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.autotune._postgres import missing_reason, postgres_server
from tests.service._processes import service
from tests.service._records import CPU

TASK = {"name": "t", "weight": 1, "workload": ["123", "AAAA"]}


@pytest.fixture
def postgres_url() -> Iterator[str]:
    reason = missing_reason()
    if reason:
        pytest.skip(f"no PostgreSQL server for the tests: {reason}")
    with postgres_server() as url:
        yield url


def test_two_servers_share_one_queue(tmp_path, postgres_url):
    with ExitStack() as stack:
        servers = [
            stack.enter_context(service(tmp_path / name, database=postgres_url))
            for name in ("a", "b")
        ]
        a, b = (stack.enter_context(server.client()) for server in servers)
        body = {"tasks": [TASK], "trials": 4, "target": CPU, "request_id": "once"}
        first = a.post("/v1/jobs/tasks", json=body)
        retried = b.post("/v1/jobs/tasks", json=body)  # the client retried on the other server
        assert (first.status_code, retried.status_code) == (201, 200)
        assert retried.json()["id"] == first.json()["id"]
        assert [j["id"] for j in b.get("/v1/jobs").json()["jobs"]] == [first.json()["id"]]
        assert b.post(f"/v1/jobs/{first.json()['id']}/cancel").json()["status"] == "cancelled"
        assert a.get(f"/v1/jobs/{first.json()['id']}").json()["status"] == "cancelled"
        assert json.loads(a.get("/v1/health").text)["database"] == "postgresql"
