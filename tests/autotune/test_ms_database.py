"""MetaScheduleDatabase: MetaSchedule's Database interface over ember's tuning database, bound to
one target. Records are hand-made schedules of a small matmul (no measurement: fast)."""

from __future__ import annotations

from pathlib import Path

import pytest
import tvm
import tvm_ffi
from tvm import te
from tvm.s_tir import meta_schedule as ms

from ember.autotune import TuningDatabase
from ember.autotune.ms_database import MetaScheduleDatabase
from ember.errors import TuningError

CPU = {"kind": "llvm", "mcpu": "cooperlake", "num-cores": 2}
OTHER_CPU = {"kind": "llvm", "mcpu": "znver4", "num-cores": 2}


def _matmul(n: int = 64) -> tvm.IRModule:
    a = te.placeholder((n, n), name="A")
    b = te.placeholder((n, n), name="B")
    k = te.reduce_axis((0, n), name="k")
    c = te.compute((n, n), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")
    return tvm.IRModule({"main": te.create_prim_func([a, b, c])})


def _schedule(mod: tvm.IRModule, factor: int) -> tvm.s_tir.Schedule:
    sch = tvm.s_tir.Schedule(mod)
    _, j, _ = sch.get_loops(sch.get_sblock("C"))
    sch.split(j, [None, factor])
    return sch


def _commit(db: MetaScheduleDatabase, mod: tvm.IRModule, factor: int, secs: float) -> None:
    workload = db.commit_workload(mod)
    args = ms.arg_info.ArgInfo.from_prim_func(mod["main"])
    record = ms.database.TuningRecord(
        _schedule(mod, factor).trace, workload, [secs], tvm.target.Target(db.target), args
    )
    db.commit_tuning_record(record)


@pytest.fixture
def store(tmp_path: Path) -> TuningDatabase:
    return TuningDatabase.open(tmp_path / "tuning.db")


def test_records_go_in_and_the_best_comes_out(store: TuningDatabase) -> None:
    mod = _matmul()
    db = MetaScheduleDatabase(store, CPU)
    assert not db.has_workload(mod)
    for factor, secs in ((4, 3e-3), (8, 1e-3), (16, 2e-3), (32, 1e10)):  # 1e10: failed
        _commit(db, mod, factor, secs)
    assert db.has_workload(mod)
    assert len(db) == 4  # every measurement
    assert len(db.get_all_tuning_records()) == 4
    top = db.get_top_k(db.commit_workload(mod), 10)
    assert [float(r.run_secs[0]) for r in top] == [1e-3, 2e-3, 3e-3]
    assert store.tuned_trials(top[0].workload.as_json()[0], CPU) == 4
    best = db.query_schedule(mod, tvm.target.Target(CPU), "main")
    assert tvm_ffi.structural_equal(best.mod, _schedule(mod, 8).mod)
    applied = ms.tir_integration.compile_tir(db, mod, tvm.target.Target(CPU))
    assert tvm_ffi.structural_equal(applied.mod, _schedule(mod, 8).mod)


def test_another_target_never_gets_these_records(store: TuningDatabase) -> None:
    """TVM issue 15549: MetaSchedule's own databases ignore the target when queried."""
    mod = _matmul()
    _commit(MetaScheduleDatabase(store, CPU), mod, 8, 1e-3)
    other = MetaScheduleDatabase(store, OTHER_CPU)
    assert other.has_workload(mod)  # workloads are shared; records are per target
    assert len(other) == 0
    assert list(other.get_top_k(other.commit_workload(mod), 5)) == []
    assert other.query_schedule(mod, tvm.target.Target(OTHER_CPU), "main") is None
    mine = MetaScheduleDatabase(store, CPU)
    assert mine.query_schedule(mod, tvm.target.Target(OTHER_CPU), "main") is None
    assert mine.query_schedule(mod, tvm.target.Target(CPU), "main") is not None


def test_records_survive_reopening_and_unknown_modules_have_none(tmp_path: Path) -> None:
    with TuningDatabase.open(tmp_path / "t.db") as store:
        _commit(MetaScheduleDatabase(store, CPU), _matmul(), 8, 1e-3)
    with TuningDatabase.open(tmp_path / "t.db") as store:
        db = MetaScheduleDatabase(store, CPU)
        assert db.query_schedule(_matmul(), tvm.target.Target(CPU), "main") is not None
        assert db.query_schedule(_matmul(32), tvm.target.Target(CPU), "main") is None


def test_a_record_for_another_target_is_refused(store: TuningDatabase) -> None:
    db = MetaScheduleDatabase(store, CPU)
    mod = _matmul()
    record = ms.database.TuningRecord(
        _schedule(mod, 8).trace, db.commit_workload(mod), [1e-3], tvm.target.Target(OTHER_CPU)
    )
    # the TuningError crosses TVM's FFI (the call goes C++ -> Python), which rethrows RuntimeError
    with pytest.raises(RuntimeError, match="open one MetaScheduleDatabase per target"):
        db.commit_tuning_record(record)
    with pytest.raises(TuningError, match="does not name its CPU"):
        MetaScheduleDatabase(store, {"kind": "llvm"})
