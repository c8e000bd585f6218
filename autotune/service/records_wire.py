"""Tuning records over HTTP: the rows of `ember db export` as JSON, read out of and into a
TuningDatabase. A record travels with its workload (hash, digest, JSON), so the receiving database
stores both; records already present (by uid) are skipped, so pulling twice changes nothing."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ember.autotune import db_transfer
from ember.autotune.database import Record, TuningDatabase
from ember.autotune.db_records import canonical_json, canonical_target

__all__ = ["add_entries", "entries_of", "parse_entries"]


def entries_of(db: TuningDatabase, records: Sequence[Record]) -> list[dict[str, Any]]:
    """The records with their workloads, as JSON-ready dicts (workloads first, each once)."""
    workloads: dict[int, dict[str, Any]] = {}
    lines = []
    for record in records:
        if record.workload_id not in workloads:
            text = canonical_json(dict(db.workloads(record.structural_hash))[record.workload_id])
            entry = db_transfer.WorkloadEntry(
                record.structural_hash, hashlib.sha256(text.encode()).hexdigest(), text
            )
            workloads[record.workload_id] = {"workload": asdict(entry)}
        workload = workloads[record.workload_id]["workload"]
        entry = db_transfer.RecordEntry(
            uid=record.uid,
            structural_hash=record.structural_hash,
            digest=workload["digest"],
            target_json=canonical_target(record.target),
            versions=record.versions,
            trace_json=canonical_json(record.trace),
            run_secs=list(record.run_secs),
            args_info_json=None if record.args_info is None else canonical_json(record.args_info),
            created=record.created,
        )
        lines.append({"record": asdict(entry)})
    return [*workloads.values(), *lines]


def parse_entries(items: Iterable[Mapping[str, Any]]) -> list[db_transfer.Entry]:
    """Entries from `entries_of`'s dicts; raises ValueError/TypeError/KeyError on anything else."""
    entries: list[db_transfer.Entry] = []
    for item in items:
        if "workload" in item:
            entries.append(db_transfer.WorkloadEntry(**item["workload"]))
        else:
            entries.append(db_transfer.RecordEntry(**item["record"]))
    return entries


def add_entries(db: TuningDatabase, entries: Sequence[db_transfer.Entry]) -> int:
    """Store the entries (through the export file format, so they are checked like `ember db
    import`); returns how many records were new."""
    with tempfile.TemporaryDirectory(prefix="ember-records-") as tmp:
        path = Path(tmp) / "records.jsonl"
        db_transfer.write_lines(entries, path)
        return db.import_(path)
