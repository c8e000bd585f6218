"""A real tuning record for the service tests: a MetaSchedule trace of a tiny TIR kernel, stored
through ember's MetaSchedule adapter (no tuning run needed)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CPU", "store_record"]

CPU = {"kind": "llvm", "mcpu": "cooperlake", "num-cores": 2}


def store_record(database: Path, seconds: float = 1e-5) -> str:
    """Store one record of a 16x16 scaling kernel on CPU in `database`; returns its hash."""
    import tvm
    import tvm_ffi
    from tvm import te
    from tvm.s_tir import meta_schedule as ms

    from ember.autotune.database import TuningDatabase
    from ember.autotune.ms_database import MetaScheduleDatabase

    a = te.placeholder((16, 16), name="A")
    b = te.compute((16, 16), lambda i, j: a[i, j] * 2.0, name="B")
    mod = tvm.IRModule({"main": te.create_prim_func([a, b])})
    sch = tvm.s_tir.Schedule(mod)
    i, _ = sch.get_loops(sch.get_sblock("B"))
    sch.parallel(i)
    with TuningDatabase.open(database) as db:
        adapter = MetaScheduleDatabase(db, CPU)
        workload = adapter.commit_workload(mod)
        args = ms.arg_info.ArgInfo.from_prim_func(mod["main"])
        adapter.commit_tuning_record(
            ms.database.TuningRecord(sch.trace, workload, [seconds], tvm.target.Target(CPU), args)
        )
    return str(tvm_ffi.structural_hash(mod))
