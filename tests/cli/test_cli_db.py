"""`ember db stats|export|import|merge`: output, round trips between files and databases, and the
error contract (exit 2 for usage errors, 1 for a TuningError, one line plus a hint)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ember.autotune import TuningDatabase
from ember.cli import main

CPU = {"kind": "llvm", "mcpu": "cooperlake", "num-cores": 2}
GPU = {"kind": "cuda", "arch": "sm_80"}


def _filled(path: Path, target: dict[str, object], n: int) -> Path:
    with TuningDatabase.open(path) as db:
        wid = db.add_workload(11, ["11", "w"])
        for i in range(n):
            db.commit_record(wid, target, [i], [0.001 * (i + 1)] if i else [1e10])
    return path


def test_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = _filled(tmp_path / "t.db", CPU, 3)
    _filled(db, GPU, 2)
    assert main(["db", "stats", "--tuning-records", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"tuning database {db} (sqlite): 1 workloads, 5 records"
    assert lines[1].split() == ["workloads", "records", "valid", "ember", "tvm", "target"]
    assert lines[2].split()[:3] == ["1", "2", "1"]
    assert lines[2].endswith('{"arch": "sm_80", "kind": "cuda"}')
    assert lines[3].split()[:3] == ["1", "3", "2"]
    assert lines[3].endswith('{"kind": "llvm", "mcpu": "cooperlake", "num-cores": 2}')


def test_export_import_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _filled(tmp_path / "source.db", CPU, 3)
    other = _filled(tmp_path / "other.db", GPU, 2)
    target = str(tmp_path / "target.db")
    out = tmp_path / "records.jsonl"
    assert main(["db", "export", str(out), "--tuning-records", str(source)]) == 0
    assert main(["db", "import", str(out), "--tuning-records", target]) == 0
    assert main(["db", "import", str(out), "--tuning-records", target]) == 0
    assert main(["db", "merge", str(other), "--tuning-records", target]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"wrote 3 records from {source} to {out}",
        f"imported 3 new records from {out} into {target}",
        f"imported 0 new records from {out} into {target}",
        f"merged 2 new records from {other} into {target}",
    ]
    with TuningDatabase.open(target) as db:
        assert (db.count(target=CPU), db.count(target=GPU)) == (3, 2)


def test_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "t.db")
    assert main(["db", "merge", str(tmp_path / "missing.db"), "--tuning-records", db]) == 2
    assert main(["db", "import", str(tmp_path / "missing.jsonl"), "--tuning-records", db]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text("[]\n")
    assert main(["db", "import", str(bad), "--tuning-records", db]) == 1
    assert main(["db", "stats", "--tuning-records", "mysql://host/db"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"ember db: error: {tmp_path / 'missing.db'}: no such database file",
        "hint: see `ember db --help`",
        f"ember db: error: {tmp_path / 'missing.jsonl'}: no such file "
        "(write one with `ember db export`)",
        "hint: see `ember db --help`",
        f"ember db: error: TuningError: {bad} is not an ember tuning-records export",
        "hint: `ember db stats` shows what a tuning database holds",
        "ember db: error: TuningError: unsupported tuning database 'mysql://host/db': use a file "
        "path, sqlite:///path or postgresql://user@host/dbname",
        "hint: `ember db stats` shows what a tuning database holds",
    ]


def test_default_database_from_the_environment(tmp_path: Path) -> None:
    """A real `ember` process: EMBER_TUNING_DB names the database when --tuning-records is not
    given, and `ember db` needs no TVM."""
    db = _filled(tmp_path / "env.db", CPU, 2)
    env = {**os.environ, "EMBER_TUNING_DB": str(db)}
    code = (
        "import sys; from ember.cli import main; rc = main(sys.argv[1:]); "
        "print('tvm' in sys.modules); sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "db", "stats"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"tuning database {db} (sqlite): 1 workloads, 2 records"
    assert done.stdout.splitlines()[-1] == "False"
