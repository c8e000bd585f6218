"""The tuning service's request and response bodies (pydantic): they are its OpenAPI spec."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ember.autotune.service.queue import Job

__all__ = [
    "MAX_TRIALS",
    "CurvePointOut",
    "EntriesOut",
    "ErrorOut",
    "HealthOut",
    "ImportOut",
    "JobListOut",
    "JobOut",
    "StatsOut",
    "TaskIn",
    "TaskJobIn",
]

MAX_TRIALS = 1_000_000
_KEY = Field(default=None, max_length=128)


class TaskIn(BaseModel):
    """One kernel to tune: MetaSchedule's `Workload.as_json()` (structural hash, base64 module)."""

    name: str = Field(min_length=1, max_length=256)
    weight: int = Field(default=1, ge=1, le=1_000_000)
    workload: tuple[str, str]


class TaskJobIn(BaseModel):
    """A tuning job over a task list (`ember tune --service` extracts it locally: no weights
    leave the client)."""

    tasks: list[TaskIn] = Field(min_length=1, max_length=10_000)
    target: str | dict[str, Any] = Field(
        default="llvm", description='"llvm" (the server\'s CPU) or a full target dict'
    )
    trials: int = Field(ge=1, le=MAX_TRIALS)
    trials_per_task: int | None = Field(default=None, ge=1, le=MAX_TRIALS)
    rpc_key: str | None = _KEY
    request_id: str | None = Field(
        default=None, max_length=128, description="idempotency key: resubmitting returns the job"
    )


class CurvePointOut(BaseModel):
    """Best whole-model latency (sum over tasks of weight x best ms) after `trials` measurements."""

    trials: int
    best_ms: float | None
    at: float


class JobOut(BaseModel):
    """A job and its progress."""

    id: int
    request_id: str | None
    owner: str
    kind: str
    filename: str | None
    target: dict[str, Any]
    trials: int
    trials_per_task: int | None
    rpc_key: str | None
    status: str
    worker: str | None
    attempts: int
    measured: int
    planned: int
    tasks: list[dict[str, Any]]
    error: str | None
    created: float
    started: float | None
    finished: float | None
    curve: list[CurvePointOut] = []

    @classmethod
    def of(cls, job: Job, curve: list[tuple[int, float | None, float]] | None = None) -> JobOut:
        """The response for a queue job (with its tuning curve when given)."""
        fields = {name: getattr(job, name) for name in cls.model_fields if name != "curve"}
        points = [CurvePointOut(trials=t, best_ms=b, at=a) for t, b, a in curve or ()]
        return cls(**fields, curve=points)


class JobListOut(BaseModel):
    """Jobs, newest first."""

    jobs: list[JobOut]


class EntriesOut(BaseModel):
    """Records with their workloads: `{"workload": {...}}` then `{"record": {...}}` items."""

    entries: list[dict[str, Any]]


class ImportOut(BaseModel):
    """How many uploaded records were new (known ones, by uid, are skipped)."""

    added: int


class HealthOut(BaseModel):
    """The server is up and reaches its database."""

    status: str
    version: str
    database: str


class StatsOut(BaseModel):
    """Jobs per status, the tuning database's size, and the workers holding leases."""

    jobs: dict[str, int]
    workloads: int
    records: int
    workers: list[str]
    uptime_sec: float


class ErrorOut(BaseModel):
    """Every error response: a message, and for malformed requests what was wrong where."""

    error: str
    detail: list[dict[str, Any]] | None = None
