"""The tuning service's HTTP API (FastAPI; the spec is at /openapi.json, the docs at /docs).

Clients submit jobs (a model file or a task list), follow and cancel them, pull the best records
for (workload, target) and upload records tuned elsewhere. Workers (`worker.py`) take the jobs from
the queue in the same database. Every route but /v1/health and the dashboard needs a bearer token.
"""

from __future__ import annotations

import base64
import binascii
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, File, Form, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from ember.autotune.database import TuningDatabase
from ember.autotune.db_records import canonical_target
from ember.autotune.service import auth
from ember.autotune.service.http_errors import BodyLimit, install_error_handlers
from ember.autotune.service.queue import STATUSES, JobQueue, JobSpec
from ember.autotune.service.records_wire import entries_of
from ember.autotune.service.schemas import (
    MAX_TRIALS,
    EntriesOut,
    ErrorOut,
    HealthOut,
    ImportOut,
    JobListOut,
    JobOut,
    StatsOut,
    TaskJobIn,
)
from ember.errors import EmberError, TuningError

__all__ = ["ServiceConfig", "create_app"]

STATIC = Path(__file__).parent / "static"
MODEL_SUFFIXES = (".onnx", ".pt2")
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 404, 409, 413, 422)
}


@dataclass(frozen=True)
class ServiceConfig:
    """How the server runs: its database, the EMBER_SERVICE_TOKEN it accepts, the upload bound."""

    database: str
    env_token: str | None = None
    max_upload_bytes: int = 64 << 20


def parse_target(target: str | dict[str, Any]) -> dict[str, Any]:
    """A full target dict from a request's target; raises TuningError for a bad one."""
    from ember.codegen.target import resolve_target

    if isinstance(target, str) and target.strip().startswith("{"):
        try:
            target = json.loads(target)
        except ValueError as err:
            raise TuningError(f"target is not valid JSON: {err}") from err
    if not isinstance(target, str | dict):
        raise TuningError(f"target must be a name or a JSON object, got {target!r}")
    try:
        spec = resolve_target(target)
        canonical_target(spec)
    except (EmberError, TypeError, ValueError) as err:
        raise TuningError(str(err)) from err
    return spec


def _check_workload(workload: tuple[str, str], name: str) -> None:
    shash, module = workload
    try:
        base64.b64decode(module, validate=True)
    except (binascii.Error, ValueError) as err:
        raise TuningError(f"task {name!r}: the workload is not MetaSchedule's as_json()") from err
    if not shash.isdigit():
        raise TuningError(f"task {name!r}: the structural hash must be decimal digits")


@dataclass
class _State:
    config: ServiceConfig
    queue: JobQueue
    records: TuningDatabase
    started: float


def _state(request: Request) -> _State:
    return request.app.state.ember


def _owner(request: Request) -> str:
    state = _state(request)
    header = request.headers.get("authorization")
    name = auth.authenticate(state.queue, header, state.config.env_token)
    if name is None:
        raise HTTPException(401, "missing or unknown bearer token", {"WWW-Authenticate": "Bearer"})
    return name


State = Annotated[_State, Depends(_state)]
Owner = Annotated[str, Depends(_owner)]
# OpenAPI links: a submitted job's id feeds the routes about it (clients and fuzzers follow them)
_JOB_ID = {"parameters": {"job_id": "$response.body#/id"}}
_SUBMITTED: dict[int | str, dict[str, Any]] = {
    code: {"description": description, "links": {
        "status": {"operationId": "job_status", **_JOB_ID},
        "cancel": {"operationId": "cancel", **_JOB_ID},
        "records": {"operationId": "job_records", **_JOB_ID},
    }} for code, description in ((201, "a new job"), (200, "the job of a known request_id"))
}  # fmt: skip
Status = Literal[STATUSES]  # type: ignore[valid-type]
router = APIRouter(prefix="/v1", responses=_ERRORS)


def create_app(config: ServiceConfig) -> FastAPI:
    """The ASGI app on `config.database` (SQLite path or postgresql:// URL)."""
    records = TuningDatabase.open(config.database)
    app = FastAPI(
        generate_unique_id_function=lambda route: route.name,
        title="ember tuning service",
        version=records.versions["ember"],
        description="Shared autotuning: a job queue, TVM RPC measurement workers and the "
        "tuning database. Authenticate with `Authorization: Bearer TOKEN`.",
    )
    app.state.ember = _State(config, JobQueue.open(config.database), records, time.time())
    app.add_middleware(BodyLimit, limit=config.max_upload_bytes)
    install_error_handlers(app)
    app.include_router(router)
    app.add_api_route("/", _dashboard, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _dashboard() -> FileResponse:
    return FileResponse(STATIC / "index.html")


def _job(state: _State, job_id: int) -> Any:
    job = state.queue.get(job_id) if 0 <= job_id <= 2**62 else None
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job


def _submit(state: _State, spec: JobSpec, payload: bytes, who: str, response: Response) -> JobOut:
    job, created = state.queue.submit(spec, payload, who)
    if job.owner != who:
        raise HTTPException(409, f"request_id {spec.request_id!r} belongs to another owner")
    response.status_code = 201 if created else 200
    return JobOut.of(job)


@router.get("/health", response_model=HealthOut, tags=["service"])
def health(state: State) -> HealthOut:
    """Whether the server is up and its database answers (no token needed)."""
    state.queue.ping()
    return HealthOut(
        status="ok", version=state.records.versions["ember"], database=state.queue.conn.backend
    )


@router.get("/stats", response_model=StatsOut, tags=["service"])
def stats(state: State, who: Owner) -> StatsOut:
    """Jobs per status, database size, workers holding leases."""
    db = state.records.stats()
    return StatsOut(
        jobs=state.queue.counts(),
        workloads=db.workloads,
        records=db.records,
        workers=state.queue.active_workers(),
        uptime_sec=time.time() - state.started,
    )


@router.post("/jobs/model", response_model=JobOut, status_code=201, tags=["jobs"],
             responses=_SUBMITTED)  # fmt: skip
def submit_model(
    state: State,
    who: Owner,
    response: Response,
    file: Annotated[bytes, File(description="an .onnx or .pt2 file")],
    filename: Annotated[str, Form(min_length=1, max_length=256)],
    trials: Annotated[int, Form(ge=1, le=MAX_TRIALS)],
    target: Annotated[str, Form(max_length=4096)] = "llvm",
    trials_per_task: Annotated[int | None, Form(ge=1, le=MAX_TRIALS)] = None,
    rpc_key: Annotated[str | None, Form(max_length=128)] = None,
    input_shapes: Annotated[str | None, Form(max_length=4096)] = None,
    request_id: Annotated[str | None, Form(max_length=128)] = None,
) -> JobOut:
    """Tune a model file's kernels (the worker imports it as `ember tune` would)."""
    from ember.model_files import parse_input_shapes

    if not filename.endswith(MODEL_SUFFIXES) or "/" in filename:
        raise TuningError(f"filename {filename!r}: upload an .onnx or .pt2 file")
    parse_input_shapes(input_shapes)
    spec = JobSpec("model", parse_target(target), trials, trials_per_task, rpc_key or None,
                   filename, input_shapes, request_id)  # fmt: skip
    return _submit(state, spec, file, who, response)


@router.post("/jobs/tasks", response_model=JobOut, status_code=201, tags=["jobs"],
             responses=_SUBMITTED)  # fmt: skip
def submit_tasks(body: TaskJobIn, state: State, who: Owner, response: Response) -> JobOut:
    """Tune a task list (kernels extracted by the client: no weights leave it)."""
    for task in body.tasks:
        _check_workload(task.workload, task.name)
    spec = JobSpec("tasks", parse_target(body.target), body.trials, body.trials_per_task,
                   body.rpc_key or None, request_id=body.request_id)  # fmt: skip
    payload = json.dumps([task.model_dump() for task in body.tasks]).encode()
    return _submit(state, spec, payload, who, response)


@router.get("/jobs", response_model=JobListOut, tags=["jobs"])
def list_jobs(
    state: State,
    who: Owner,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> JobListOut:
    """Jobs, newest first (page with `before`: the smallest id seen)."""
    return JobListOut(jobs=[JobOut.of(job) for job in state.queue.recent(status, limit, before)])


@router.get("/jobs/{job_id}", response_model=JobOut, tags=["jobs"])
def job_status(job_id: int, state: State, who: Owner) -> JobOut:
    """A job with its progress and tuning curve."""
    return JobOut.of(_job(state, job_id), state.queue.curve(job_id))


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, tags=["jobs"])
def cancel(job_id: int, state: State, who: Owner) -> JobOut:
    """Cancel a queued or running job (a running one stops at its next progress update)."""
    _job(state, job_id)
    return JobOut.of(state.queue.cancel(job_id))


@router.get("/jobs/{job_id}/records", response_model=EntriesOut, tags=["records"])
def job_records(job_id: int, state: State, who: Owner) -> EntriesOut:
    """Every record of the job's tasks on its target (what `ember tune --service` pulls)."""
    job, db = _job(state, job_id), state.records
    hashes = [h for t in job.tasks for h in (t["structural_hash"], t.get("symbolic_hash")) if h]
    found = [r for h in hashes for r in db.records(h, job.target)]
    return EntriesOut(entries=entries_of(db, found))


@router.get("/records/best", response_model=EntriesOut, tags=["records"])
def best(
    state: State,
    who: Owner,
    structural_hash: Annotated[str, Query(pattern=r"^[0-9]{1,40}$")],
    target: Annotated[str, Query(max_length=4096)],
    k: Annotated[int, Query(ge=1, le=100)] = 1,
    ember_version: Annotated[str | None, Query(max_length=64)] = None,
    tvm_version: Annotated[str | None, Query(max_length=64)] = None,
) -> EntriesOut:
    """The k fastest records of a workload on exactly this target and these versions (by
    default the server's)."""
    spec, db = parse_target(target), state.records
    versions = {
        "ember": ember_version or db.versions["ember"],
        "tvm": tvm_version or db.versions["tvm"],
    }
    if versions == db.versions:
        return EntriesOut(entries=entries_of(db, db.best(structural_hash, spec, k)))
    with TuningDatabase.open(state.config.database, versions=versions) as other:
        return EntriesOut(entries=entries_of(other, other.best(structural_hash, spec, k)))


_JSON_LINES = {"schema": {"type": "string", "description": "`ember db export`'s file"}}
_NDJSON = {"content": {"text/plain": _JSON_LINES, "application/x-ndjson": _JSON_LINES},
           "required": True}  # fmt: skip


@router.post("/records", response_model=ImportOut, tags=["records"],
             openapi_extra={"requestBody": _NDJSON})  # fmt: skip
async def upload_records(request: Request, state: State, who: Owner) -> ImportOut:
    """Add records tuned elsewhere: the JSON Lines file of `ember db export`."""
    body = await request.body()
    return ImportOut(added=await run_in_threadpool(_import, state.records, body))


def _import(records: TuningDatabase, body: bytes) -> int:
    with tempfile.TemporaryDirectory(prefix="ember-upload-") as tmp:
        path = Path(tmp) / "records.jsonl"
        path.write_bytes(body)
        try:
            return records.import_(path)
        except (TypeError, ValueError, KeyError, AttributeError) as err:
            raise TuningError(f"not an `ember db export` file: {err}") from err


def serve(config: ServiceConfig, host: str, port: int) -> None:
    """Run the API with uvicorn until interrupted."""
    import signal

    import uvicorn

    # uvicorn re-raises SIGTERM after its graceful shutdown: make that an exit the caller's
    # `finally` sees (it stops the workers), not the default instant death
    signal.signal(signal.SIGTERM, _exit)
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning")


def _exit(*_: object) -> None:
    raise SystemExit(0)
