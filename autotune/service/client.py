"""The tuning service's client: what `ember tune --service` and `ember compile --service` call.

Records pulled from the service are stored in a local tuning database, which is also the cache:
when the service cannot be reached, `pull_best` warns and the build uses what the cache holds.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ember.autotune.database import TuningDatabase
from ember.autotune.service.records_wire import add_entries, parse_entries
from ember.errors import ServiceError

__all__ = ["ServiceClient", "ServiceUnreachable", "pull_best"]

log = logging.getLogger(__name__)

_FINAL = ("done", "failed", "cancelled")


class ServiceUnreachable(ServiceError):
    """No answer from the service (down, wrong address, network)."""


class ServiceClient:
    """HTTP calls to one service with one bearer token."""

    def __init__(self, url: str, token: str | None, timeout_sec: float = 30.0) -> None:
        import httpx

        if not url.startswith(("http://", "https://")):
            raise ServiceError(f"--service {url!r}: expected http://HOST:PORT")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_sec)
        self._transport_error = httpx.TransportError

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except self._transport_error as err:
            raise ServiceUnreachable(
                f"cannot reach the tuning service at {self.url}: {err}"
            ) from err
        if response.status_code >= 400:
            try:
                message = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            hint = " (set EMBER_SERVICE_TOKEN)" if response.status_code == 401 else ""
            raise ServiceError(f"{self.url}{path}: HTTP {response.status_code}: {message}{hint}")
        return response.json()

    def submit_model(self, path: Path, *, target: dict[str, Any], trials: int,
                     trials_per_task: int | None = None, rpc_key: str | None = None,
                     input_shapes: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Upload a model file as a job; returns the job."""
        form = {"filename": path.name, "target": json.dumps(target), "trials": str(trials),
                "request_id": uuid.uuid4().hex}  # fmt: skip
        optional = {"trials_per_task": trials_per_task, "rpc_key": rpc_key,
                    "input_shapes": input_shapes}  # fmt: skip
        form.update({k: str(v) for k, v in optional.items() if v is not None})
        return self._call("POST", "/v1/jobs/model", data=form, files={"file": path.read_bytes()})

    def submit_tasks(self, tasks: Sequence[Any], *, target: dict[str, Any], trials: int,
                     trials_per_task: int | None = None,
                     rpc_key: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Submit `ember.autotune.tasks.Task`s as a job; returns the job."""
        from tvm.s_tir import meta_schedule as ms

        body = {
            "tasks": [{"name": t.name, "weight": t.weight,
                       "workload": ms.database.Workload(t.mod).as_json()} for t in tasks],
            "target": target, "trials": trials, "trials_per_task": trials_per_task,
            "rpc_key": rpc_key, "request_id": uuid.uuid4().hex,
        }  # fmt: skip
        return self._call("POST", "/v1/jobs/tasks", json=body)

    def job(self, job_id: int) -> dict[str, Any]:
        """A job's status, progress and curve."""
        return self._call("GET", f"/v1/jobs/{job_id}")

    def cancel(self, job_id: int) -> dict[str, Any]:
        """Cancel a job."""
        return self._call("POST", f"/v1/jobs/{job_id}/cancel")

    def wait(self, job_id: int, progress: Callable[[int, int], None] | None = None,
             poll_sec: float = 1.0) -> dict[str, Any]:  # fmt: skip
        """Poll until the job ends, reporting (measured, planned) as it goes; returns the job."""
        while True:
            job = self.job(job_id)
            if progress is not None and job["planned"]:
                progress(job["measured"], job["planned"])
            if job["status"] in _FINAL:
                return job
            time.sleep(poll_sec)

    def job_entries(self, job_id: int) -> list[dict[str, Any]]:
        """The records of a job's tasks (with their workloads)."""
        return self._call("GET", f"/v1/jobs/{job_id}/records")["entries"]

    def best_entries(self, structural_hash: str, target: dict[str, Any],
                     versions: dict[str, str], k: int = 1) -> list[dict[str, Any]]:  # fmt: skip
        """The k best records of a workload on `target` for `versions`."""
        params = {"structural_hash": structural_hash, "target": json.dumps(target), "k": k,
                  "ember_version": versions["ember"], "tvm_version": versions["tvm"]}  # fmt: skip
        return self._call("GET", "/v1/records/best", params=params)["entries"]


def pull_best(client: ServiceClient, hashes: Sequence[str], target: dict[str, Any],
              db: TuningDatabase) -> int | None:  # fmt: skip
    """Store the best record of each workload hash into `db` (the local cache); returns how many
    were new, or None when the service is unreachable (the cache is used as it is)."""
    entries = []
    try:
        for structural_hash in dict.fromkeys(hashes):
            entries += client.best_entries(structural_hash, target, db.versions)
    except ServiceUnreachable as err:
        log.info("%s; using the records cached in %s", err, db.url)
        return None
    return add_entries(db, parse_entries(entries))
