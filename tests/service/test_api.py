"""The service's HTTP API against a real `ember serve` process on loopback (no workers: these
tests are about the API, the queue and the records; tuning is in test_round_trip.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ember.cli import main
from tests.service._processes import Server, service
from tests.service._records import CPU, store_record

TASK = {"name": "t", "weight": 1, "workload": ["123", "AAAA"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with service(tmp_path_factory.mktemp("api"), extra=["--max-upload-mb", "1"]) as running:
        yield running


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert "Traceback" not in response.text
    return response.json()["error"]


def test_health_is_open_and_everything_else_needs_a_token(server):
    assert httpx.get(f"{server.url}/v1/health").json()["status"] == "ok"
    with server.client(token=None) as anonymous:
        response = anonymous.get("/v1/jobs")
        assert "missing or unknown bearer token" in _error(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    with server.client(token="wrong") as stranger:
        _error(stranger.get("/v1/stats"), 401)
        _error(stranger.post("/v1/jobs/tasks", json={}), 401)


def test_named_tokens_from_the_command_line(server, capsys):
    assert (
        main(["service", "token", "create", "bob", "--tuning-records", str(server.database)]) == 0
    )
    token = capsys.readouterr().out.strip()
    with server.client(token=token) as bob:
        job = bob.post("/v1/jobs/tasks", json={"tasks": [TASK], "trials": 2, "target": CPU})
        assert job.status_code == 201
        assert job.json()["owner"] == "bob"


def test_submit_a_task_list_once_per_request_id(api):
    body = {"tasks": [TASK], "trials": 4, "target": CPU, "request_id": "same-request"}
    first = api.post("/v1/jobs/tasks", json=body)
    again = api.post("/v1/jobs/tasks", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    job = api.get(f"/v1/jobs/{first.json()['id']}").json()
    assert job["status"] == "queued"
    assert job["target"] == CPU
    assert job["trials"] == 4
    listed = [j["id"] for j in api.get("/v1/jobs", params={"status": "queued"}).json()["jobs"]]
    assert listed.count(job["id"]) == 1
    cancelled = api.post(f"/v1/jobs/{job['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"


def test_upload_a_model_file(api, tmp_path):
    response = api.post(
        "/v1/jobs/model",
        data={"filename": "tiny.onnx", "trials": "8", "target": json.dumps(CPU)},
        files={"file": b"onnx bytes: the worker imports them"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["kind"] == "model"
    assert response.json()["filename"] == "tiny.onnx"


def test_bad_requests_get_json_errors(api):
    assert "upload an .onnx or .pt2 file" in _error(
        api.post("/v1/jobs/model", data={"filename": "x.txt", "trials": "1"}, files={"file": b"x"}),
        400,
    )
    assert "trials" in _error(
        api.post(
            "/v1/jobs/model", data={"filename": "x.onnx", "trials": "many"}, files={"file": b"x"}
        ),
        422,
    )
    assert "unknown target" in _error(
        api.post("/v1/jobs/tasks", json={"tasks": [TASK], "trials": 1, "target": "tpu"}), 400
    )
    assert "not MetaSchedule's as_json()" in _error(
        api.post(
            "/v1/jobs/tasks", json={"tasks": [{**TASK, "workload": ["1", "%%"]}], "trials": 1}
        ),
        400,
    )
    assert "malformed request" in _error(
        api.post(
            "/v1/jobs/tasks", content=b"{not json", headers={"content-type": "application/json"}
        ),
        422,
    )
    assert "no job 999999" in _error(api.get("/v1/jobs/999999"), 404)
    assert "--input-shapes" in _error(
        api.post(
            "/v1/jobs/model",
            data={"filename": "x.onnx", "trials": "1", "input_shapes": "x:[1,"},
            files={"file": b"x"},
        ),
        400,
    )


def test_uploads_over_the_limit_get_413(api):
    big = b"0" * (2 << 20)
    message = _error(
        api.post(
            "/v1/jobs/model", data={"filename": "big.onnx", "trials": "1"}, files={"file": big}
        ),
        413,
    )
    assert "over the server's limit of 1,048,576 bytes" in message

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(40):
            yield b"x" * 65536

    _error(api.post("/v1/records", content=chunks()), 413)


def test_records_upload_then_best(api, server, tmp_path):
    source = tmp_path / "elsewhere.db"
    structural_hash = store_record(source)
    export = tmp_path / "records.jsonl"
    assert main(["db", "export", str(export), "--tuning-records", str(source)]) == 0
    assert api.post("/v1/records", content=export.read_bytes()).json() == {"added": 1}
    assert api.post("/v1/records", content=export.read_bytes()).json() == {"added": 0}
    best = api.get("/v1/records/best",
                   params={"structural_hash": structural_hash, "target": json.dumps(CPU)})  # fmt: skip
    entries = best.json()["entries"]
    assert [next(iter(e)) for e in entries] == ["workload", "record"]
    assert entries[1]["record"]["run_secs"] == [1e-5]
    other_cpu = {**CPU, "mcpu": "znver4"}  # never another device's records
    assert api.get("/v1/records/best", params={"structural_hash": structural_hash,
                   "target": json.dumps(other_cpu)}).json()["entries"] == []  # fmt: skip
    assert "not an ember tuning-records export" in _error(
        api.post("/v1/records", content=b'{"hello": 1}\n'), 400
    )
    stats = api.get("/v1/stats").json()
    assert stats["records"] >= 1
    assert stats["workers"] == []


def test_openapi_spec_and_dashboard_are_served(server):
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert {"/v1/jobs/model", "/v1/jobs/tasks", "/v1/jobs/{job_id}", "/v1/records/best",
            "/v1/records", "/v1/health", "/v1/stats"} <= set(spec["paths"])  # fmt: skip
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200
    assert "/static/app.js" in page.text


def test_serve_refuses_to_start_without_any_token(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("EMBER_SERVICE_TOKEN", raising=False)
    assert main(["serve", "--tuning-records", str(Path(tmp_path) / "empty.db")]) == 2
    assert "set EMBER_SERVICE_TOKEN" in capsys.readouterr().err
