"""SIGKILL a worker in the middle of a job: its lease expires, another worker resumes the job from
the committed records, and the job finishes with nothing lost, nothing stored twice and nothing
measured beyond the budget."""

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

TRIALS = 10  # two search rounds: 8 candidates (committed together), then 2
WORKER = ["--lease", "4", "--cost-model", "random"]


@pytest.mark.slow
def test_a_killed_workers_job_finishes_on_another_worker(tmp_path):
    model, _, _ = mlp_onnx(tmp_path / "mlp.onnx")
    target = resolve_target("llvm")
    graph, _ = run_pipeline(load_model(str(model), {}, {}).graph)
    tasks = extract_tasks(graph, target)
    with service(tmp_path) as server, server.client() as api:
        first = worker(server.database, tmp_path / "worker-a.log", *WORKER)
        with ServiceClient(server.url, TOKEN) as client:
            job = client.submit_tasks(tasks, target=target, trials=TRIALS)
        second = None
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:  # the first round is committed, the second not
                job = api.get(f"/v1/jobs/{job['id']}").json()
                assert job["status"] in ("queued", "running"), job["error"]
                with TuningDatabase.open(server.database) as db:
                    at_kill = {r.uid for r in db.records(target=target)}
                if at_kill:
                    break
                time.sleep(0.05)
            stop(first, signal.SIGKILL)
            assert f":{first.pid}:" in job["worker"]
            with TuningDatabase.open(server.database) as db:
                committed = db.records(target=target)
            at_kill = {r.uid for r in committed}
            valid_at_kill = sum(r.mean_secs is not None for r in committed)
            assert 0 < valid_at_kill < TRIALS, "killed too late"
            second = worker(server.database, tmp_path / "worker-b.log", *WORKER)
            job = wait_done(api, job["id"])
        finally:
            for process in (first, second):
                if process is not None:
                    stop(process)
        with TuningDatabase.open(server.database) as db:
            records = db.records(target=target)
    assert job["status"] == "done", job["error"]
    assert f":{second.pid}:" in job["worker"]
    assert job["attempts"] == 2
    assert at_kill <= {r.uid for r in records}, "a record committed before the kill was lost"
    # the second worker measured only what was missing (failed candidates do not count towards
    # the budget), and each measurement is stored once
    assert job["measured"] == TRIALS - valid_at_kill
    assert len(records) == len(at_kill) + job["measured"]
