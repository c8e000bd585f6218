"""A worker told to stop (SIGTERM) hands its job back to the queue at once, and a cancelled job
frees its worker without being marked done."""

from __future__ import annotations

import signal
import time

import pytest

from ember.autotune.database import TuningDatabase
from ember.autotune.service.client import ServiceClient
from ember.autotune.tasks import extract_tasks
from ember.codegen.target import resolve_target
from ember.model_files import load_model
from ember.passes import run_pipeline
from tests.service._models import mlp_onnx
from tests.service._processes import TOKEN, service, stop, worker
from tests.service.test_round_trip import wait_done

WORKER = ["--lease", "30", "--cost-model", "random"]


def _tasks(model, target: dict) -> list:
    graph, _ = run_pipeline(load_model(str(model), {}, {}).graph)
    return extract_tasks(graph, target)


def _wait_for_records(api, job_id: int, database: str, target: dict) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        job = api.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] in ("queued", "running"), job["error"]
        with TuningDatabase.open(database) as db:
            if db.count(target=target):
                return
        time.sleep(0.05)
    raise AssertionError("no record was committed")


@pytest.mark.slow
def test_sigterm_hands_the_job_back_and_cancel_frees_the_worker(tmp_path):
    model, _, _ = mlp_onnx(tmp_path / "mlp.onnx")
    target = resolve_target("llvm")
    tasks = _tasks(model, target)
    with (
        service(tmp_path) as server,
        server.client() as api,
        ServiceClient(server.url, TOKEN) as client,
    ):
        first = worker(server.database, tmp_path / "worker-a.log", *WORKER)
        job = client.submit_tasks(tasks, target=target, trials=10)
        _wait_for_records(api, job["id"], server.database, target)
        stop(first, signal.SIGTERM)  # well within the 30 s lease
        handed_back = api.get(f"/v1/jobs/{job['id']}").json()
        assert handed_back["status"] == "queued"
        assert handed_back["worker"] is None
        second = worker(server.database, tmp_path / "worker-b.log", *WORKER)
        try:
            assert wait_done(api, job["id"])["status"] == "done"
            cancelled = client.submit_tasks(tasks, target=target, trials=30)
            while api.get(f"/v1/jobs/{cancelled['id']}").json()["status"] != "running":
                time.sleep(0.05)
            api.post(f"/v1/jobs/{cancelled['id']}/cancel")
            other, _, _ = mlp_onnx(tmp_path / "other.onnx", layers=2)
            fresh = [t for t in _tasks(other, target) if t.name != tasks[0].name]
            after = client.submit_tasks(fresh, target=target, trials=1)
            assert wait_done(api, after["id"])["status"] == "done"  # the worker was freed
        finally:
            stop(second)
        assert api.get(f"/v1/jobs/{cancelled['id']}").json()["status"] == "cancelled"
    assert "hand" in (tmp_path / "worker-a.log").read_text()
