"""The tuning database: every measured schedule, keyed by workload, full target and versions.

One schema on two backends: SQLite (the default, a file; WAL journal, each commit fsynced, so a
killed tuner loses no committed record) and PostgreSQL for teams (`postgresql://...`, psycopg 3).
A record belongs to one workload (its structural hash plus the workload's JSON, which tells hash
collisions apart), one target (the complete target dict, canonical JSON: kind, mcpu/arch,
num-cores, ...) and one pair of versions (ember, TVM). Lookups match all three exactly, so one
device's records are never returned for another (TVM issue 15549). Every measurement is kept, failed
ones included (with `mean_secs=None`), so `tuned_trials` counts what a resumed run may skip.

`ember.autotune.ms_database.MetaScheduleDatabase` wraps a `TuningDatabase` bound to one target as
a MetaSchedule `Database` for `tune_tasks`/`tune_relax` and `ApplyDatabase`/`compile_relax`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import Any

from ember.autotune import db_backend, db_transfer
from ember.autotune.db_records import (
    RECORD_COLUMNS,
    DatabaseStats,
    Record,
    TargetStats,
    canonical_json,
    canonical_target,
    current_versions,
    mean_secs,
    record_from_row,
)
from ember.errors import TuningError

__all__ = [
    "DatabaseStats",
    "Record",
    "TargetStats",
    "TuningDatabase",
    "canonical_target",
    "current_versions",
]


class TuningDatabase:
    """A connection to a tuning database; reads and writes records of `versions` only.

    Thread-safe (one lock around the connection). Use as a context manager or call `close()`.
    """

    def __init__(self, conn: db_backend.Connection, versions: Mapping[str, str]) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.versions: dict[str, str] = {"ember": versions["ember"], "tvm": versions["tvm"]}

    @classmethod
    def open(
        cls,
        url_or_path: str | PathLike[str] | None = None,
        *,
        versions: Mapping[str, str] | None = None,
    ) -> TuningDatabase:
        """Open (creating if needed) a database.

        Args:
            url_or_path: a file path or `sqlite:///path` (SQLite), `postgresql://user@host/db`
                (PostgreSQL), or None for `ember.config.tuning_db_path()` (EMBER_TUNING_DB, else
                tuning.db in ember's cache dir).
            versions: the ember/TVM versions to read and write; default `current_versions()`.
        """
        if url_or_path is None:
            from ember import config

            url_or_path = config.tuning_db_path()
        return cls(db_backend.connect(str(url_or_path)), versions or current_versions())

    @property
    def url(self) -> str:
        """Where the database lives (a PostgreSQL URL is shown without its password)."""
        return self._conn.url

    def close(self) -> None:
        """Close the connection; committed records are already durable."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> TuningDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[db_backend.Connection]:
        with self._lock, self._conn.transaction():
            yield self._conn

    # -- workloads -------------------------------------------------------------------------

    def add_workload(self, structural_hash: str | int, workload: Any) -> int:
        """Store a workload unless present; returns its id.

        Args:
            structural_hash: the workload's structural hash (MetaSchedule's, as int or text).
            workload: the workload as JSON-able data (`ms.database.Workload.as_json()`); two
                workloads with one hash but different JSON are kept apart.
        """
        text = canonical_json(workload)
        with self._transaction() as conn:
            return db_backend.insert_workload(conn, str(structural_hash), text)

    def workloads(self, structural_hash: str | int) -> list[tuple[int, Any]]:
        """The (id, workload JSON) pairs stored under a structural hash (usually one)."""
        with self._lock:
            rows = self._conn.query(
                "SELECT id, workload FROM ember_workloads WHERE structural_hash = ? ORDER BY id",
                (str(structural_hash),),
            )
        return [(id_, json.loads(text)) for id_, text in rows]

    # -- records ---------------------------------------------------------------------------

    def commit_record(
        self,
        workload_id: int,
        target: Mapping[str, Any],
        trace: Any,
        run_secs: Sequence[float],
        *,
        args_info: Any | None = None,
    ) -> Record:
        """Store one measurement; it is durable (fsynced) when this returns.

        Args:
            workload_id: from `add_workload`.
            target: the full target dict it was measured on (see `canonical_target`).
            trace: the schedule trace as JSON (`TuningRecord.as_json()[1]`).
            run_secs: every repeat's time in seconds; empty or >= 1e9 means it failed.
            args_info: MetaSchedule's ArgInfo JSON, if any.
        """
        entry = db_transfer.RecordEntry(
            uid=uuid.uuid4().hex,
            structural_hash="",  # unused: the workload is given by id
            digest="",
            target_json=canonical_target(target),
            versions=self.versions,
            trace_json=canonical_json(trace),
            run_secs=[float(s) for s in run_secs],
            args_info_json=None if args_info is None else canonical_json(args_info),
            created=time.time(),
        )
        with self._transaction() as conn:
            _insert_record(conn, workload_id, entry)
            (record,) = self._select(conn, "r.uid = ?", (entry.uid,))
        return record

    def _select(
        self, conn: db_backend.Connection, where: str, params: Sequence[Any], tail: str = ""
    ) -> list[Record]:
        rows = conn.query(
            f"SELECT {RECORD_COLUMNS} FROM ember_records r "
            f"JOIN ember_workloads w ON w.id = r.workload_id WHERE {where} {tail}",
            tuple(params),
        )
        return [record_from_row(row) for row in rows]

    def _scope(
        self, structural_hash: str | int | None, target: Mapping[str, Any] | None
    ) -> tuple[str, list[Any]]:
        """WHERE clause for this handle's versions, and optionally one workload hash / target."""
        where = ["r.ember_version = ?", "r.tvm_version = ?"]
        params: list[Any] = [self.versions["ember"], self.versions["tvm"]]
        if structural_hash is not None:
            where.append("w.structural_hash = ?")
            params.append(str(structural_hash))
        if target is not None:
            where.append("r.target = ?")
            params.append(canonical_target(target))
        return " AND ".join(where), params

    def best(
        self,
        structural_hash: str | int,
        target: Mapping[str, Any],
        k: int = 1,
        *,
        workload_id: int | None = None,
    ) -> list[Record]:
        """The k fastest valid records (lowest mean) of a workload on exactly this target and
        these versions; fewer (or none) when fewer exist. `workload_id` narrows a hash collision."""
        where, params = self._scope(structural_hash, target)
        where += " AND r.mean_secs IS NOT NULL"
        if workload_id is not None:
            where += " AND r.workload_id = ?"
            params.append(workload_id)
        with self._lock:
            return self._select(
                self._conn, where, params, f"ORDER BY r.mean_secs, r.id LIMIT {int(k)}"
            )

    def records(
        self,
        structural_hash: str | int | None = None,
        target: Mapping[str, Any] | None = None,
    ) -> list[Record]:
        """Every measurement (failed ones too) of these versions, oldest first; optionally only
        one workload hash and/or one target."""
        where, params = self._scope(structural_hash, target)
        with self._lock:
            return self._select(self._conn, where, params, "ORDER BY r.id")

    def tuned_trials(self, structural_hash: str | int, target: Mapping[str, Any]) -> int:
        """How many trials (measurements, failed ones included) a workload already has on this
        target and these versions: a resumed tune runs only the rest of its budget."""
        return self.count(structural_hash, target)

    def count(
        self, structural_hash: str | int | None = None, target: Mapping[str, Any] | None = None
    ) -> int:
        """How many records of these versions there are, optionally of one hash / target."""
        where, params = self._scope(structural_hash, target)
        with self._lock:
            ((count,),) = self._conn.query(
                "SELECT COUNT(*) FROM ember_records r "
                f"JOIN ember_workloads w ON w.id = r.workload_id WHERE {where}",
                tuple(params),
            )
        return int(count)

    # -- whole-database operations ------------------------------------------------------------

    def stats(self) -> DatabaseStats:
        """Counts of workloads and records, overall and per (target, versions)."""
        with self._lock:
            ((workloads,),) = self._conn.query("SELECT COUNT(*) FROM ember_workloads")
            ((records,),) = self._conn.query("SELECT COUNT(*) FROM ember_records")
            rows = self._conn.query(
                "SELECT target, ember_version, tvm_version, COUNT(DISTINCT workload_id), "
                "COUNT(*), COUNT(mean_secs) FROM ember_records "
                "GROUP BY target, ember_version, tvm_version "
                "ORDER BY target, ember_version, tvm_version"
            )
        targets = tuple(
            TargetStats(
                target=json.loads(target),
                versions={"ember": ember_v, "tvm": tvm_v},
                workloads=int(n_workloads),
                records=int(n_records),
                valid_records=int(n_valid),
            )
            for target, ember_v, tvm_v, n_workloads, n_records, n_valid in rows
        )
        return DatabaseStats(self.url, self._conn.backend, int(workloads), int(records), targets)

    def export(self, path: str | PathLike[str]) -> int:
        """Write every workload and record (all targets and versions) to a JSON Lines file;
        returns the number of records written."""
        with self._lock:
            return db_transfer.write_lines(db_transfer.dump(self._conn), Path(path))

    def import_(self, path: str | PathLike[str]) -> int:
        """Add the records of a file written by `export`; returns how many were new (records
        already present, by uid, are skipped, so importing twice changes nothing)."""
        return self._add_all(db_transfer.read_lines(Path(path)))

    def merge(self, other: TuningDatabase) -> int:
        """Copy every workload and record of `other` (all targets and versions) into this
        database; returns how many records were new."""
        with other._lock:
            entries = list(db_transfer.dump(other._conn))
        return self._add_all(entries)

    def _add_all(self, entries: Iterable[db_transfer.Entry]) -> int:
        added = 0
        ids: dict[tuple[str, str], int] = {}
        with self._transaction() as conn:
            for entry in entries:
                key = (entry.structural_hash, entry.digest)
                if isinstance(entry, db_transfer.WorkloadEntry):
                    ids[key] = db_backend.insert_workload(
                        conn, entry.structural_hash, entry.workload_json
                    )
                elif key not in ids:
                    raise TuningError(
                        f"record {entry.uid} names workload {entry.structural_hash} "
                        "that comes nowhere before it"
                    )
                else:
                    added += _insert_record(conn, ids[key], entry)
        return added


def _insert_record(
    conn: db_backend.Connection, workload_id: int, entry: db_transfer.RecordEntry
) -> bool:
    """Insert one record unless its uid is present; True when it was new."""
    rows = conn.query(
        "INSERT INTO ember_records (uid, workload_id, target, ember_version, tvm_version, "
        "trace, run_secs, args_info, mean_secs, created) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (uid) DO NOTHING RETURNING id",
        (
            entry.uid,
            workload_id,
            entry.target_json,
            entry.versions["ember"],
            entry.versions["tvm"],
            entry.trace_json,
            json.dumps(entry.run_secs),
            entry.args_info_json,
            mean_secs(entry.run_secs),
            entry.created,
        ),
    )
    return bool(rows)
