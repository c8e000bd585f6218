"""End to end, all real: `ember serve` with a worker that measures through a TVM RPC tracker and
`rpc_server` on loopback; a model submitted over HTTP is tuned, its records are served, and
`ember compile --service` pulls and applies them (and builds from its cache when the service is
down)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from ember.autotune.database import TuningDatabase
from ember.cli import main
from ember.codegen.target import resolve_target
from tests.service._models import mlp_onnx
from tests.service._processes import RPC_KEY, TOKEN, rpc_tracker, service


def wait_done(api, job_id: int, timeout_sec: float = 900) -> dict:
    deadline = time.monotonic() + timeout_sec
    while time.monotonic() < deadline:
        job = api.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish: {job}")


@pytest.mark.slow
def test_submit_measure_remotely_serve_and_compile(tmp_path, capsys, monkeypatch):
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from ember.autotune.ms_database import MetaScheduleDatabase
    from ember.runtime import load

    monkeypatch.setenv("EMBER_SERVICE_TOKEN", TOKEN)  # the client's token
    model, x, expected = mlp_onnx(tmp_path / "mlp.onnx")
    target = resolve_target("llvm")
    worker = ["--workers", "1", "--cost-model", "random", "--lease", "20"]
    with rpc_tracker(tmp_path) as tracker:
        with service(tmp_path, workers=1, extra=[*worker, "--rpc-tracker", tracker]) as server:
            with server.client() as api:
                submitted = api.post(
                    "/v1/jobs/model",
                    data={
                        "filename": model.name,
                        "trials": "3",
                        "target": json.dumps(target),
                        "rpc_key": RPC_KEY,
                    },
                    files={"file": model.read_bytes()},
                ).json()
                job = wait_done(api, submitted["id"])
                assert job["status"] == "done", job["error"]
                assert job["measured"] >= 1
                assert job["curve"][-1]["best_ms"] > 0
                (task,) = job["tasks"]
                served = api.get("/v1/records/best", params={
                    "structural_hash": task["structural_hash"], "target": json.dumps(target)})  # fmt: skip
                (best,) = [e["record"] for e in served.json()["entries"] if "record" in e]
            assert "load_module" in (tmp_path / "rpc.log").read_text()  # measured on the rpc_server
            local, library = tmp_path / "local.db", tmp_path / "mlp.so"
            argv = ["compile", str(model), "--service", server.url, "--tuning-records", str(local),
                    "-o", str(library)]  # fmt: skip
            assert main(argv) == 0
            assert "1 new records from" in capsys.readouterr().out
        with TuningDatabase.open(local) as db:
            (cached,) = db.records(task["structural_hash"], target)
            assert cached.uid == best["uid"]
            # what build applies: the kernel's schedule comes from the pulled record
            from ember.autotune.tasks import extract_tasks
            from ember.model_files import load_model
            from ember.passes import run_pipeline

            graph, _ = run_pipeline(load_model(str(model), {}, {}).graph)
            (kernel,) = extract_tasks(graph, target)
            adapter = MetaScheduleDatabase(db, target)
            assert adapter.query_schedule(kernel.mod, tvm.target.Target(target), "main") is not None
            assert isinstance(adapter.get_all_tuning_records()[0], ms.database.TuningRecord)
        (y,) = load(library)(x)
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
        # the service is down now: compile builds from the cache and says so
        assert main(argv) == 0
        assert "cannot be reached; using the records cached in" in capsys.readouterr().err
