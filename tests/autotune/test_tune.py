"""The tuning flow: tasks from ember's fused module, MetaSchedule search with the in-process
builder/runner (worker processes, or in-process), records in a TuningDatabase, and builds that apply
them (falling back to the default schedules for kernels without records); resume; the tuning curve;
the cost models; remote measurement through a real RPC tracker and server on loopback; the
`ember tune` command line with its JSON log and tuning-curve plot."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ember.autotune.database import TuningDatabase
from ember.autotune.measure import Tracker
from ember.autotune.records import schedule_database
from ember.autotune.tasks import extract_tasks, fused_module
from ember.autotune.tune import tune
from ember.codegen.build import build
from ember.codegen.target import resolve_target
from ember.errors import TuningError
from ember.ir import Builder, Graph, sym
from ember.ir.ops import Add, Exp, MatMul, Softmax
from ember.runtime import Executor
from tests.service._processes import RPC_KEY, rpc_tracker

pytest.importorskip("xgboost")

N = 64
TRIALS = 16


def _linear(rng: np.random.Generator, rows: object = 32, *, extra: bool = False) -> Graph:
    """x @ W + b (one fused kernel); `extra` adds exp(x) as a second output (another kernel)."""
    b = Builder()
    x = b.input((rows, N), "float32", "x")
    w = b.const(rng.standard_normal((N, N)).astype(np.float32))
    bias = b.const(rng.standard_normal(N).astype(np.float32))
    b.output(b.emit(Add(), b.emit(MatMul(), x, w), bias))
    if extra:
        b.output(b.emit(Exp(), x))
    return b.build()


def _run(g: Graph, database: object, x: np.ndarray) -> list[np.ndarray]:
    executor = Executor(build(g, "llvm", database=database).executable)
    return [t.numpy() for t in executor.run([x])]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Graph, Path, object]:
    """The linear graph tuned for TRIALS trials into a fresh SQLite database."""
    path = tmp_path_factory.mktemp("tune") / "records.db"
    g = _linear(np.random.default_rng(0))
    with TuningDatabase.open(path) as db:
        report = tune(
            g, "llvm", trials=TRIALS, database=schedule_database(db, "llvm"), cost_model="xgb"
        )
    return g, path, report


def test_tuning_stores_records_that_builds_apply(tuned):
    g, path, report = tuned
    (task,) = report.tasks
    assert task.trials == TRIALS
    assert not task.skipped
    assert task.default_ms is not None
    assert task.tuned_ms is not None
    assert task.gflops
    with TuningDatabase.open(path) as db:
        database = schedule_database(db, "llvm")
        # the kernel build() sees has the tuned workload's hash: the pass marks it scheduled
        import tvm
        from tvm import relax

        mod = fused_module(g, resolve_target("llvm"))
        with tvm.target.Target(resolve_target("llvm")), database:
            applied = relax.transform.MetaScheduleApplyDatabase()(mod)
        kernels = [f for gv, f in applied.functions_items() if gv.name_hint != "main"]
        assert all(f.attrs.get("tirx.is_scheduled", False) for f in kernels)
        x = np.random.default_rng(1).standard_normal((32, N)).astype(np.float32)
        (out,) = _run(g, database, x)
    w, bias = (np.asarray(a) for a in g.consts.values())
    np.testing.assert_allclose(out, x @ w + bias, rtol=1e-4, atol=1e-4)


def test_compile_applies_tuning_records(tuned):
    import ember
    from ember.api import compile_graph

    g, path, _ = tuned
    program = compile_graph(g, "llvm", tuning_records=str(path))
    x = np.random.default_rng(2).standard_normal((32, N)).astype(np.float32)
    (out,) = [t.numpy() for t in program.run([x])]
    w, bias = (np.asarray(a) for a in g.consts.values())
    np.testing.assert_allclose(out, x @ w + bias, rtol=1e-4, atol=1e-4)
    assert "tuning_records" in ember.compile.__doc__


def test_resume_skips_tasks_tuned_to_budget(tuned):
    g, path, _ = tuned
    start = time.perf_counter()
    with TuningDatabase.open(path) as db:
        report = tune(g, "llvm", trials=TRIALS, database=schedule_database(db, "llvm"), workers=0)
    (task,) = report.tasks
    assert task.skipped
    assert task.trials == 0
    assert task.total_trials == TRIALS
    assert [(p.trials, p.task) for p in report.curve] == [(0, None)]  # nothing measured
    assert time.perf_counter() - start < 30  # no search: only the re-measurement


def test_tuning_curve_tracks_the_best_measured_latency(tuned):
    _, _, report = tuned
    (task,) = report.tasks
    start, *curve = report.curve
    assert (start.trials, start.task, start.model_ms) == (0, None, task.default_ms)
    assert [p.trials for p in curve] == list(range(1, TRIALS + 1))  # one point per trial
    bests = [p.task_best_ms for p in curve if p.task_best_ms is not None]
    assert len(bests) >= TRIALS // 2  # most candidates measure
    assert bests == sorted(bests, reverse=True)  # best so far never gets worse
    assert curve[-1].model_ms == pytest.approx(task.weight * bests[-1])
    assert all(p.noise >= 0 for p in curve)
    logged = json.loads(json.dumps(report.to_json()))
    assert logged["curve"][-1]["task_best_ms"] == pytest.approx(bests[-1])
    assert logged["model_ms"] == pytest.approx(report.model_ms)


def test_tuning_curve_counts_untuned_tasks_at_their_default():
    from ember.autotune.tuning_curve import TuningCurve, trials_to_reach

    curve = TuningCurve({"a": 2, "b": 1})
    curve.record("a", [[3.0, 3.0], [], [2.0, 2.2]])
    curve.record("b", [[5.0]])
    curve.record("a", [[2.5]])
    points = curve.points({"a": 4.0, "b": 6.0})
    assert [(p.trials, p.task, p.task_best_ms, p.model_ms) for p in points] == [
        (0, None, None, 2 * 4.0 + 6.0),
        (1, "a", 3.0, 2 * 3.0 + 6.0),
        (2, "a", 3.0, 2 * 3.0 + 6.0),  # a failed candidate
        (3, "a", 2.1, 2 * 2.1 + 6.0),
        (4, "b", 5.0, 2 * 2.1 + 5.0),
        (5, "a", 2.1, 2 * 2.1 + 5.0),
    ]
    assert points[3].noise == pytest.approx(0.2 / 2.1)
    assert curve.points({"a": 4.0, "b": None})[1].model_ms is None
    logged = [p.__dict__ for p in points]
    assert trials_to_reach(logged, 9.5) == 4
    assert trials_to_reach(logged, 2.5, task="a") == 3
    assert trials_to_reach(logged, 1.0) is None


@pytest.mark.slow  # ~45-70 s here: the pretrained model scores every evolutionary population
def test_ember_cost_model_tunes(rng):
    from tvm.s_tir import meta_schedule as ms

    from ember.autotune.cost_model import pretrained_path

    if not Path(pretrained_path()).exists():
        pytest.skip("ember's pretrained cost model is not built yet")
    report = tune(
        _linear(rng), "llvm", trials=8, database=ms.database.MemoryDatabase(), cost_model="ember"
    )
    (task,) = report.tasks
    assert report.cost_model == "ember"
    assert task.trials == 8
    assert task.tuned_ms is not None


def test_kernels_without_records_fall_back_to_default_schedules(tuned):
    _, path, _ = tuned
    g = _linear(np.random.default_rng(0), extra=True)  # same linear kernel + an untuned exp
    x = np.random.default_rng(3).standard_normal((32, N)).astype(np.float32)
    with TuningDatabase.open(path) as db:
        out, e = _run(g, schedule_database(db, "llvm"), x)
    np.testing.assert_allclose(e, np.exp(x), rtol=1e-5)
    assert out.shape == (32, N)


def test_softmax_kernels_tune_and_builds_apply_their_records(rng):
    """Kernels with exp are tuned as libm calls; fast math rewrites the scheduled kernel after
    (MetaSchedule's flop estimate once failed on fast math's Let bindings)."""
    from tvm.s_tir import meta_schedule as ms

    b = Builder()
    b.output(b.emit(Softmax(-1), b.input((64, 256), "float32", "x")))
    g = b.build()
    database = ms.database.MemoryDatabase()
    report = tune(g, "llvm", trials=4, database=database, cost_model="random", workers=0)
    (task,) = report.tasks
    assert task.trials == 4
    assert task.tuned_ms is not None
    x = rng.standard_normal((64, 256)).astype(np.float32)
    (got,) = _run(g, database, x)
    want = np.exp(x - x.max(-1, keepdims=True))
    np.testing.assert_allclose(got, want / want.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_symbolic_kernels_are_tuned_at_a_representative_size(rng):
    g = _linear(rng, sym("n"))
    (task,) = extract_tasks(g, "llvm")
    assert task.symbolic is not None
    assert task.hints == (("n", 128),)
    assert "T.int64(128)" in task.mod.script()


def test_gpu_tuning_needs_a_remote_device(rng):
    from tvm.s_tir import meta_schedule as ms

    with pytest.raises(TuningError, match="pass --rpc-tracker HOST:PORT --rpc-key KEY"):
        tune(_linear(rng), "cuda", trials=4, database=ms.database.MemoryDatabase())


@pytest.fixture
def rpc_device(tmp_path: Path) -> Iterator[Tracker]:
    """A real `tvm.exec.rpc_tracker` and `rpc_server` on loopback, stopped with their children
    (the server runs its loop in a `tvm.exec.popen_worker`) after the test."""
    with rpc_tracker(tmp_path) as address:
        host, port = address.rsplit(":", 1)
        yield Tracker(host, int(port), RPC_KEY)


def test_remote_measurement_through_rpc_tracker(rpc_device, rng):
    from tvm.s_tir import meta_schedule as ms

    database = ms.database.MemoryDatabase()
    report = tune(_linear(rng), "llvm", trials=2, database=database, tracker=rpc_device)
    (task,) = report.tasks
    assert task.trials >= 1
    assert task.tuned_ms is not None
    assert task.default_ms is not None


def test_cli_tune_round_trip(tmp_path):
    from ember.cli import main

    records, log, plot = tmp_path / "records.db", tmp_path / "tune.json", tmp_path / "curve.png"
    model = "tests.cli.tiny_models:mlp"
    assert main(["tune", model, "--trials", "4", "--tuning-records", str(records),
                 "--cost-model", "random", "--workers", "0", "--log", str(log),
                 "--plot", str(plot)]) == 0  # fmt: skip
    report = json.loads(log.read_text())
    assert report["tasks"]
    assert sum(t["trials"] for t in report["tasks"]) >= 1
    assert report["curve"][-1]["trials"] == sum(t["trials"] for t in report["tasks"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["compile", model, "--tuning-records", str(records),
                 "-o", str(tmp_path / "mlp.so")]) == 0  # fmt: skip
    assert (tmp_path / "mlp.so").exists()


def test_plot_overlays_logs_of_several_runs(tmp_path):
    from ember.autotune.tuning_curve import plot_curves

    def log(cost_model: str, scale: float) -> dict[str, object]:
        points = [
            {"trials": n, "task": t, "task_best_ms": scale / n, "model_ms": 3 * scale / n}
            for n, t in ((1, "matmul"), (2, "exp"), (3, "matmul"), (4, "matmul"))
        ]
        return {"graph": "g", "cost_model": cost_model, "curve": points,
                "tasks": [{"name": "matmul"}, {"name": "exp"}, {"name": "untuned"}]}  # fmt: skip

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a task panel without trials once warned: empty legend
        path = plot_curves([log("ember", 1.0), log("xgb", 2.0)], tmp_path / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000  # panels with two curves each, not an empty canvas


def test_cli_compare_needs_a_tune_log(tmp_path, capsys):
    from ember.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    code = main(["tune", "tests.cli.tiny_models:mlp", "--trials", "1", "--plot",
                 str(tmp_path / "c.png"), "--compare", str(bad)])  # fmt: skip
    assert code == 2
    assert "not an `ember tune --log` file (no tuning curve)" in capsys.readouterr().err
