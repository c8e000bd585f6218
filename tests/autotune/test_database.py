"""The tuning database on both backends (SQLite, and a real PostgreSQL server the tests start):
round trips, target and version isolation (TVM issue 15549), resume counts, export/import/merge,
and a writer killed with SIGKILL losing no committed record."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pytest

from ember.autotune import TuningDatabase, current_versions
from ember.errors import TuningError
from tests.autotune._postgres import missing_reason, postgres_server

CPU = {"kind": "llvm", "mcpu": "cooperlake", "num-cores": 2}
OTHER_CPU = {"kind": "llvm", "mcpu": "znver4", "num-cores": 2}
MORE_CORES = {"kind": "llvm", "mcpu": "cooperlake", "num-cores": 4}
GPU = {"kind": "cuda", "arch": "sm_80"}
TRACE = [[["GetSBlock", [], [{"name": "C", "func_name": "main"}], ["b0"]]], []]
ARGS = [["TENSOR", "float32", [16, 16]], ["TENSOR", "float32", [16, 16]]]

_databases = count()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    reason = missing_reason()
    if reason:
        pytest.skip(f"no PostgreSQL server for the tests: {reason}")
    with postgres_server() as url:
        yield url


def _fresh_postgres(server_url: str) -> str:
    """A new, empty database on the test server."""
    import psycopg

    name = f"ember_test_{next(_databases)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database's URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tuning.db'}"
    return _fresh_postgres(request.getfixturevalue("postgres_url"))


@pytest.fixture
def db(url: str) -> Iterator[TuningDatabase]:
    with TuningDatabase.open(url) as database:
        yield database


def test_records_round_trip(url: str) -> None:
    with TuningDatabase.open(url) as db:
        wid = db.add_workload(2978640444045484634, ["2978640444045484634", "AAAA"])
        committed = db.commit_record(wid, CPU, TRACE, [0.002, 0.003], args_info=ARGS)
    with TuningDatabase.open(url) as db:  # a new connection reads what the first committed
        (record,) = db.records()
        assert db.workloads("2978640444045484634") == [(wid, ["2978640444045484634", "AAAA"])]
    assert record == committed
    assert record.structural_hash == "2978640444045484634"
    assert (record.target, record.trace, record.args_info) == (CPU, TRACE, ARGS)
    assert record.run_secs == (0.002, 0.003)
    assert record.mean_secs == pytest.approx(0.0025)
    assert record.versions == current_versions()


def test_every_measurement_is_kept_and_best_is_fastest(db: TuningDatabase) -> None:
    wid = db.add_workload(7, ["7", "w"])
    for i, secs in enumerate([[0.5], [0.2, 0.3], [1e10], [], [0.1], [0.3]]):
        db.commit_record(wid, CPU, [i], secs)
    assert [r.trace for r in db.records(7, CPU)] == [[0], [1], [2], [3], [4], [5]]
    assert [r.trace for r in db.best(7, CPU, k=3)] == [[4], [1], [5]]
    assert [r.trace for r in db.best(7, CPU, k=10)] == [[4], [1], [5], [0]]  # failures never
    assert [r.mean_secs for r in db.records(7, CPU)][2:4] == [None, None]


def test_records_of_one_device_are_never_returned_for_another(db: TuningDatabase) -> None:
    wid = db.add_workload(7, ["7", "w"])
    for target, secs in ((CPU, 0.3), (OTHER_CPU, 0.1), (MORE_CORES, 0.2), (GPU, 0.05)):
        db.commit_record(wid, target, [target["kind"], secs], [secs])
    for target, secs in ((CPU, 0.3), (OTHER_CPU, 0.1), (MORE_CORES, 0.2), (GPU, 0.05)):
        (best,) = db.best(7, target, k=10)
        assert (best.target, best.run_secs) == (target, (secs,))
        assert db.tuned_trials(7, target) == 1
    assert db.best(7, {"kind": "llvm", "mcpu": "cooperlake"}) == []  # num-cores unknown
    assert db.best(7, {"num-cores": 2, "mcpu": "cooperlake", "kind": "llvm"})[0].run_secs == (0.3,)


def test_records_of_other_versions_are_not_returned(url: str) -> None:
    old = {"ember": "0.0.9", "tvm": "0.26.0"}
    with TuningDatabase.open(url, versions=old) as db:
        db.commit_record(db.add_workload(7, ["7", "w"]), CPU, ["old"], [0.1])
    with TuningDatabase.open(url) as db:
        assert db.best(7, CPU) == []
        assert db.tuned_trials(7, CPU) == 0
        db.commit_record(db.add_workload(7, ["7", "w"]), CPU, ["new"], [0.2])
        assert [r.trace for r in db.best(7, CPU)] == [["new"]]
        assert [(t.versions, t.records) for t in db.stats().targets] == [
            (old, 1),
            (current_versions(), 1),
        ]


def test_resume_counts_trials_per_workload_and_target(url: str) -> None:
    with TuningDatabase.open(url) as db:
        a, b = db.add_workload(1, ["1", "a"]), db.add_workload(2, ["2", "b"])
        for i in range(5):
            db.commit_record(a, CPU, [i], [0.1] if i != 3 else [1e10])
        db.commit_record(b, CPU, [0], [0.1])
        db.commit_record(a, GPU, [0], [0.1])
    with TuningDatabase.open(url) as db:  # a re-run asks what is already there
        assert db.tuned_trials(1, CPU) == 5  # failed trials were trials too
        assert db.tuned_trials("2", CPU) == 1
        assert db.tuned_trials(1, GPU) == 1
        assert db.tuned_trials(3, CPU) == 0
        assert db.count() == 7
        assert db.count(target=CPU) == 6


def test_workloads_are_stored_once_and_hash_collisions_kept_apart(db: TuningDatabase) -> None:
    first = db.add_workload(9, ["9", "first"])
    assert db.add_workload("9", ["9", "first"]) == first
    second = db.add_workload(9, ["9", "second"])  # same hash, different module
    assert second != first
    db.commit_record(first, CPU, ["first"], [0.2])
    db.commit_record(second, CPU, ["second"], [0.1])
    assert [r.trace for r in db.best(9, CPU, k=2)] == [["second"], ["first"]]
    assert [r.trace for r in db.best(9, CPU, workload_id=first)] == [["first"]]


def _fill(db: TuningDatabase, target: dict[str, object], n: int) -> None:
    wid = db.add_workload(5, ["5", "w"])
    for i in range(n):
        db.commit_record(wid, target, [i], [0.1 * (i + 1)])


def test_export_import_merge(url: str, tmp_path: Path) -> None:
    source = TuningDatabase.open(tmp_path / "source.db")
    _fill(source, CPU, 3)
    _fill(source, GPU, 2)
    assert source.export(tmp_path / "records.jsonl") == 5
    with TuningDatabase.open(url) as db:
        db.commit_record(db.add_workload(5, ["5", "w"]), CPU, ["own"], [0.9])
        assert db.import_(tmp_path / "records.jsonl") == 5
        assert db.import_(tmp_path / "records.jsonl") == 0  # by uid: nothing twice
        assert db.merge(source) == 0
        _fill(source, CPU, 1)
        assert db.merge(source) == 1
        stats = db.stats()
        assert (stats.workloads, stats.records) == (1, 7)
        assert sorted((t.target["kind"], t.records) for t in stats.targets) == [
            ("cuda", 2),
            ("llvm", 5),
        ]
        assert db.best(5, CPU)[0].uid == source.best(5, CPU)[0].uid
        assert {r.uid for r in db.records()} >= {r.uid for r in source.records()}
    source.close()


def test_merge_between_backends(postgres_url: str, tmp_path: Path) -> None:
    with (
        TuningDatabase.open(tmp_path / "local.db") as local,
        TuningDatabase.open(_fresh_postgres(postgres_url)) as team,
    ):
        _fill(local, CPU, 3)
        _fill(team, GPU, 2)
        assert team.merge(local) == 3
        assert local.merge(team) == 2
        assert sorted(r.uid for r in local.records()) == sorted(r.uid for r in team.records())


def test_a_damaged_export_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"some": "json"}\n')
    with (
        TuningDatabase.open(tmp_path / "t.db") as db,
        pytest.raises(TuningError, match="is not an ember tuning-records export"),
    ):
        db.import_(path)
    path.write_text('{"format": "ember-tuning-records", "schema": 1}\n{"record": {"uid": 1}}\n')
    with TuningDatabase.open(tmp_path / "t.db") as db, pytest.raises(TuningError, match="damaged"):
        db.import_(path)
    assert TuningDatabase.open(tmp_path / "t.db").count() == 0  # all or nothing


def test_a_target_that_does_not_name_its_cpu_is_refused(tmp_path: Path) -> None:
    with TuningDatabase.open(tmp_path / "t.db") as db:
        wid = db.add_workload(1, ["1", "w"])
        with pytest.raises(TuningError, match=r"does not name its CPU \('mcpu'\)"):
            db.commit_record(wid, {"kind": "llvm"}, [], [0.1])
        with pytest.raises(TuningError, match="need a target dict with a 'kind'"):
            db.best(1, "llvm")  # type: ignore[arg-type]


def test_bad_urls_and_newer_schemas_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TuningError, match="unsupported tuning database 'mysql://x'"):
        TuningDatabase.open("mysql://x")
    TuningDatabase.open(tmp_path / "t.db").close()
    with sqlite3.connect(tmp_path / "t.db") as conn:
        conn.execute("UPDATE ember_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(TuningError, match="has schema version 99; this ember reads up to 1"):
        TuningDatabase.open(tmp_path / "t.db")


def test_an_unreachable_server_is_a_tuning_error_without_the_password() -> None:
    pytest.importorskip("psycopg")
    port = _closed_port()
    with pytest.raises(TuningError, match=r"cannot connect to tuning database") as caught:
        TuningDatabase.open(f"postgresql://tuner:s3cret@127.0.0.1:{port}/ember")
    assert f"postgresql://tuner:***@127.0.0.1:{port}/ember" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_default_location_comes_from_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMBER_TUNING_DB", str(tmp_path / "env.db"))
    with TuningDatabase.open() as db:
        assert db.url == str(tmp_path / "env.db")
    monkeypatch.delenv("EMBER_TUNING_DB")
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "cache"))
    with TuningDatabase.open() as db:
        assert db.url == str(tmp_path / "cache" / "tuning.db")


_WRITER = """
import sys
from ember.autotune import TuningDatabase
db = TuningDatabase.open(sys.argv[1])
wid = db.add_workload(1, ["1", "w" * 2000])
i = 0
while True:
    record = db.commit_record(wid, {"kind": "llvm", "mcpu": "cooperlake"}, ["t" * 500, i], [0.1])
    print(record.uid, flush=True)  # reported only once committed
    i += 1
"""


@pytest.mark.parametrize("delay", [0.4, 0.9, 1.3])
def test_sigkill_while_committing_loses_no_committed_record(tmp_path: Path, delay: float) -> None:
    path = tmp_path / "killed.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    first = writer.stdout.readline()  # started committing
    time.sleep(delay)
    os.kill(writer.pid, signal.SIGKILL)
    reported = {first.strip(), *writer.stdout.read().split()}
    assert writer.wait() == -signal.SIGKILL
    with sqlite3.connect(path) as conn:  # opening replays the WAL
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    with TuningDatabase.open(path) as db:
        stored = {r.uid for r in db.records()}
        assert reported <= stored
        assert len(stored) - len(reported) <= 1  # at most the one committed but not yet reported
        assert len(stored) > 5
