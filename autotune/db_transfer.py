"""Moving tuning records between databases: the rows as entries, and the JSON Lines export file.

The file starts with a header line, then one line per workload, then one per record; a record
names its workload by (structural hash, digest), so files from different databases merge cleanly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ember.autotune.db_backend import SCHEMA_VERSION, Connection
from ember.errors import TuningError

__all__ = ["Entry", "RecordEntry", "WorkloadEntry", "dump", "read_lines", "write_lines"]

_FORMAT = "ember-tuning-records"


@dataclass(frozen=True)
class WorkloadEntry:
    """A workload row, without its database-local id."""

    structural_hash: str
    digest: str
    workload_json: str


@dataclass(frozen=True)
class RecordEntry:
    """A record row; its workload is named by (structural_hash, digest)."""

    uid: str
    structural_hash: str
    digest: str
    target_json: str
    versions: dict[str, str]
    trace_json: str
    run_secs: list[float]
    args_info_json: str | None
    created: float


Entry = WorkloadEntry | RecordEntry


def dump(conn: Connection) -> Iterator[Entry]:
    """Every workload, then every record, in id order."""
    for shash, digest, text in conn.query(
        "SELECT structural_hash, digest, workload FROM ember_workloads ORDER BY id"
    ):
        yield WorkloadEntry(shash, digest, text)
    rows = conn.query(
        "SELECT r.uid, w.structural_hash, w.digest, r.target, r.ember_version, r.tvm_version, "
        "r.trace, r.run_secs, r.args_info, r.created FROM ember_records r "
        "JOIN ember_workloads w ON w.id = r.workload_id ORDER BY r.id"
    )
    for uid, shash, digest, target, ember_v, tvm_v, trace, run_secs, args_info, created in rows:
        yield RecordEntry(
            uid=uid,
            structural_hash=shash,
            digest=digest,
            target_json=target,
            versions={"ember": ember_v, "tvm": tvm_v},
            trace_json=trace,
            run_secs=json.loads(run_secs),
            args_info_json=args_info,
            created=created,
        )


def write_lines(entries: Iterable[Entry], path: Path) -> int:
    """Write the entries as JSON Lines (atomically: a temporary file renamed into place);
    returns the number of records."""
    records = 0
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("w") as f:
            f.write(json.dumps({"format": _FORMAT, "schema": SCHEMA_VERSION}) + "\n")
            for entry in entries:
                f.write(json.dumps(_to_line(entry), sort_keys=True) + "\n")
                records += isinstance(entry, RecordEntry)
        partial.replace(path)
    except OSError as err:
        raise TuningError(f"cannot write tuning records to {path}: {err}") from err
    return records


def _to_line(entry: Entry) -> dict[str, Any]:
    if isinstance(entry, WorkloadEntry):
        return {
            "workload": {
                "structural_hash": entry.structural_hash,
                "digest": entry.digest,
                "json": json.loads(entry.workload_json),
            }
        }
    return {
        "record": {
            "uid": entry.uid,
            "structural_hash": entry.structural_hash,
            "digest": entry.digest,
            "target": json.loads(entry.target_json),
            "versions": entry.versions,
            "trace": json.loads(entry.trace_json),
            "run_secs": entry.run_secs,
            "args_info": None if entry.args_info_json is None else json.loads(entry.args_info_json),
            "created": entry.created,
        }
    }


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def read_lines(path: Path) -> Iterator[Entry]:
    """The entries of a file written by `write_lines`; raises TuningError for anything else."""
    try:
        with path.open() as f:
            header = json.loads(f.readline() or "null")
            if not isinstance(header, dict) or header.get("format") != _FORMAT:
                raise TuningError(f"{path} is not an ember tuning-records export")
            if header.get("schema", 0) > SCHEMA_VERSION:
                raise TuningError(
                    f"{path} has schema {header['schema']}; this ember reads up to "
                    f"{SCHEMA_VERSION}: upgrade ember"
                )
            for number, line in enumerate(f, start=2):
                yield _from_line(json.loads(line), path, number)
    except OSError as err:
        raise TuningError(f"cannot read tuning records from {path}: {err}") from err
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise TuningError(f"{path} is damaged: {type(err).__name__}: {err}") from err


def _from_line(line: dict[str, Any], path: Path, number: int) -> Entry:
    if "workload" in line:
        w = line["workload"]
        return WorkloadEntry(w["structural_hash"], w["digest"], _compact(w["json"]))
    if "record" not in line:
        raise TuningError(f"{path}:{number}: neither a workload nor a record")
    r = line["record"]
    return RecordEntry(
        uid=r["uid"],
        structural_hash=r["structural_hash"],
        digest=r["digest"],
        target_json=_compact(r["target"]),
        versions={"ember": r["versions"]["ember"], "tvm": r["versions"]["tvm"]},
        trace_json=_compact(r["trace"]),
        run_secs=[float(s) for s in r["run_secs"]],
        args_info_json=None if r["args_info"] is None else _compact(r["args_info"]),
        created=float(r["created"]),
    )
