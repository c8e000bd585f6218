"""What a tuning record is and what it is keyed by: the full target (canonical JSON) and the
ember/TVM versions; the row layout the database reads records from."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from ember.errors import TuningError

__all__ = [
    "RECORD_COLUMNS",
    "DatabaseStats",
    "Record",
    "TargetStats",
    "canonical_json",
    "canonical_target",
    "current_versions",
    "mean_secs",
    "record_from_row",
]

# MetaSchedule stores 1e10 s as the run time of a candidate that failed to build or run
_FAILED_SECS = 1e9


@dataclass(frozen=True)
class Record:
    """One measured schedule of one workload on one target."""

    id: int
    uid: str  # stable across export/import/merge: the same measurement is never stored twice
    workload_id: int
    structural_hash: str
    target: dict[str, Any]
    versions: dict[str, str]  # {"ember": ..., "tvm": ...}
    trace: Any  # the MetaSchedule trace as JSON (TuningRecord.as_json()[1])
    run_secs: tuple[float, ...]
    args_info: Any | None  # MetaSchedule ArgInfo JSON, or None
    mean_secs: float | None  # None: the candidate failed to build or run
    created: float  # Unix time of the measurement


@dataclass(frozen=True)
class TargetStats:
    """What the database holds for one (target, versions) pair."""

    target: dict[str, Any]
    versions: dict[str, str]
    workloads: int
    records: int
    valid_records: int


@dataclass(frozen=True)
class DatabaseStats:
    """Counts for `ember db stats`."""

    url: str
    backend: str  # "sqlite" or "postgresql"
    workloads: int
    records: int
    targets: tuple[TargetStats, ...]


def current_versions() -> dict[str, str]:
    """The versions records are keyed by: this ember and the installed TVM (no TVM import)."""
    from ember import __version__

    try:
        tvm_version = metadata.version("apache-tvm")
    except metadata.PackageNotFoundError:
        tvm_version = "unknown"
    return {"ember": __version__, "tvm": tvm_version}


def canonical_target(target: Mapping[str, Any]) -> str:
    """The target as sorted, compact JSON: the key records are stored and looked up under.

    Raises TuningError for a target that does not say which device it is: an `llvm` target
    without `mcpu` would let one CPU's records be applied to another."""
    if not isinstance(target, Mapping) or "kind" not in target:
        raise TuningError(
            f"tuning records need a target dict with a 'kind', got {target!r}; "
            "use ember.codegen.target.resolve_target"
        )
    if target["kind"] == "llvm" and "mcpu" not in target:
        raise TuningError(
            f"target {dict(target)} does not name its CPU ('mcpu'): records measured on one CPU "
            "must not be applied to another; use ember.codegen.target.resolve_target('llvm')"
        )
    return json.dumps(target, sort_keys=True, separators=(",", ":"), default=list)


def canonical_json(value: Any) -> str:
    """Sorted, compact JSON: equal data always gives equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def mean_secs(run_secs: Sequence[float]) -> float | None:
    """The mean run time, or None for a failed measurement (no times, or MetaSchedule's 1e10)."""
    if not run_secs or any(not math.isfinite(s) or s >= _FAILED_SECS for s in run_secs):
        return None
    return sum(run_secs) / len(run_secs)


# the columns `record_from_row` reads, from ember_records r JOIN ember_workloads w
RECORD_COLUMNS = (
    "r.id, r.uid, r.workload_id, w.structural_hash, r.target, r.ember_version, r.tvm_version, "
    "r.trace, r.run_secs, r.args_info, r.mean_secs, r.created"
)


def record_from_row(row: Sequence[Any]) -> Record:
    """A Record from a row of RECORD_COLUMNS."""
    (id_, uid, workload_id, shash, target, ember_v, tvm_v) = row[:7]
    trace, run_secs, args_info, mean, created = row[7:]
    return Record(
        id=id_,
        uid=uid,
        workload_id=workload_id,
        structural_hash=shash,
        target=json.loads(target),
        versions={"ember": ember_v, "tvm": tvm_v},
        trace=json.loads(trace),
        run_secs=tuple(json.loads(run_secs)),
        args_info=None if args_info is None else json.loads(args_info),
        mean_secs=mean,
        created=created,
    )
