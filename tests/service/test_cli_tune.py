"""`ember tune MODEL --service URL` end to end: a `pkg.module:factory` model goes as a task list
(extracted locally; no weights leave the client), the server's worker tunes it, the client follows
the job and stores its records in the local database, and `ember compile` applies them."""

from __future__ import annotations

import json

import pytest

from ember.autotune.database import TuningDatabase
from ember.cli import main
from tests.service._processes import TOKEN, service


@pytest.mark.slow
def test_tune_through_the_service_then_compile_locally(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EMBER_SERVICE_TOKEN", TOKEN)  # the client's token
    model = "tests.cli.tiny_models:mlp"
    local, log = tmp_path / "local.db", tmp_path / "job.json"
    with service(tmp_path, workers=1, extra=["--cost-model", "random"]) as server:
        argv = ["tune", model, "--trials", "2", "--service", server.url,
                "--tuning-records", str(local), "--log", str(log)]  # fmt: skip
        assert main(argv) == 0
        out = capsys.readouterr()
        job = json.loads(log.read_text())
        with server.client() as api:
            served = api.get(f"/v1/jobs/{job['id']}/records").json()["entries"]
    assert job["kind"] == "tasks"
    assert job["status"] == "done"
    assert "tuning" in out.err  # the tqdm bar of local tuning
    uids = {e["record"]["uid"] for e in served if "record" in e}
    with TuningDatabase.open(local) as db:
        assert {r.uid for r in db.records()} == uids
    assert len(uids) >= 1
    assert f"{len(uids)} new records in" in out.out
    assert (
        main(["compile", model, "--tuning-records", str(local), "-o", str(tmp_path / "m.so")]) == 0
    )
