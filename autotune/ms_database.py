"""`MetaScheduleDatabase`: a TuningDatabase seen by MetaSchedule as its `Database`, for one target.

MetaSchedule's `Database.get_top_k(workload, k)` takes no target, and its stock `query_*` methods
ignore the target they are given, so a database holding several devices' records hands one
device's schedules to another (TVM issue 15549). This adapter is bound to one target (and the
versions of its TuningDatabase): it stores every record under that target, returns only that
target's records, and answers `query_tuning_record`/`query_schedule`/`query_ir_module` (used by
`ApplyDatabase` and `compile_relax`) with nothing for any other target.

    db = TuningDatabase.open(path)
    ms_db = MetaScheduleDatabase(db, resolve_target("llvm"))
    ms.relax_integration.tune_relax(..., database=ms_db)
    with ms_db: lib = relax.build(MetaScheduleApplyDatabase()(mod), target)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import tvm_ffi
from tvm.ir import IRModule
from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.database import PyDatabase, TuningRecord, Workload
from tvm.target import Target

from ember.autotune.database import Record, TuningDatabase, canonical_target
from ember.errors import TuningError

__all__ = ["MetaScheduleDatabase"]


def _device(target: Target) -> str:
    """A target's identity for comparison: TVM's canonical export, host left out (records are
    about the device that runs the kernel)."""
    spec = {k: v for k, v in target.export().items() if k != "host"}
    return json.dumps(spec, sort_keys=True, default=list)


@derived_object
class MetaScheduleDatabase(PyDatabase):
    """MetaSchedule's view of `db` for `target` (a full target dict: kind, mcpu/arch, ...)."""

    def __init__(self, db: TuningDatabase, target: Mapping[str, Any]) -> None:
        super().__init__()
        canonical_target(target)  # refuse a target that does not name its device
        self.db = db
        self.target = dict(target)
        self._device = _device(Target(self.target))
        self._workloads: dict[str, list[tuple[int, Workload]]] = {}  # by structural hash

    def _candidates(self, shash: str) -> list[tuple[int, Workload]]:
        if shash not in self._workloads:
            self._workloads[shash] = [
                (id_, Workload.from_json(data)) for id_, data in self.db.workloads(shash)
            ]
        return self._workloads[shash]

    def _find(self, mod: IRModule) -> tuple[int, Workload] | None:
        shash = str(tvm_ffi.structural_hash(mod))
        for id_, workload in self._candidates(shash):
            if tvm_ffi.structural_equal(workload.mod, mod):
                return id_, workload
        return None

    def _commit(self, mod: IRModule) -> tuple[int, Workload]:
        found = self._find(mod)
        if found is not None:
            return found
        workload = Workload(mod)
        data = workload.as_json()
        id_ = self.db.add_workload(data[0], data)
        self._candidates(str(data[0])).append((id_, workload))
        return id_, workload

    def has_workload(self, mod: IRModule) -> bool:
        """Whether the workload is stored (for any target)."""
        return self._find(mod) is not None

    def commit_workload(self, mod: IRModule) -> Workload:
        """Store the workload if new; returns it."""
        return self._commit(mod)[1]

    def commit_tuning_record(self, record: TuningRecord) -> None:
        """Store one measurement under this adapter's target; durable when this returns."""
        if record.target is not None and _device(record.target) != self._device:
            raise TuningError(
                f"a record for target {record.target.export()} was committed to the tuning "
                f"database bound to {self.target}: open one MetaScheduleDatabase per target"
            )
        trace, run_secs, _target, args_info = record.as_json()
        self.db.commit_record(
            self._commit(record.workload.mod)[0],
            self.target,
            trace,
            [float(s) for s in run_secs or ()],
            args_info=args_info,
        )

    def _to_tvm(self, record: Record, workload: Workload) -> TuningRecord:
        return TuningRecord.from_json(
            [record.trace, list(record.run_secs), self.target, record.args_info], workload
        )

    def get_top_k(self, workload: Workload, top_k: int) -> list[TuningRecord]:
        """The fastest valid records of the workload on this target, fastest first."""
        found = self._find(workload.mod)
        if found is None or top_k <= 0:
            return []
        id_, stored = found
        best = self.db.best(
            str(tvm_ffi.structural_hash(workload.mod)), self.target, top_k, workload_id=id_
        )
        return [self._to_tvm(record, stored) for record in best]

    def get_all_tuning_records(self) -> list[TuningRecord]:
        """Every record of this target (failed measurements too), oldest first."""
        result = []
        for record in self.db.records(target=self.target):
            workloads = dict(self._candidates(record.structural_hash))
            result.append(self._to_tvm(record, workloads[record.workload_id]))
        return result

    def query_tuning_record(
        self, mod: IRModule, target: Target, workload_name: str | None = None
    ) -> TuningRecord | None:
        """The best record of `mod`, or None when `target` is not this adapter's target.

        `query_schedule` and `query_ir_module` (TVM's, unchanged) go through this method."""
        if _device(target) != self._device:
            return None
        found = self._find(mod)
        if found is None:
            return None
        best = self.get_top_k(found[1], 1)
        return best[0] if best else None

    def __len__(self) -> int:
        """How many records this target has (failed measurements included)."""
        return self.db.count(target=self.target)
