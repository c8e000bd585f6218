"""The on-disk compile cache: a new process skips codegen, anything that changes the code misses,
broken entries are rebuilt and never run, and a disabled cache writes nothing."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ember import config
from ember.api import compile_graph
from ember.codegen.cache import store_entry
from ember.errors import CodegenError
from ember.ir import Builder, Graph
from ember.ir.ops import MatMul, Softmax

_BUILD_STEPS = {"lower", "fuse", "schedule", "compile"}

_CHILD = """
import json, logging, sys
import numpy as np
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
from ember.api import compile_graph
from ember.codegen.cache import _versions
from tests.codegen.test_cache import _graph
program = compile_graph(_graph())
out = program.run([np.ones((4, 8), np.float32)])[0].numpy()
print(json.dumps({"hit": program.cache_hit, "key": program.cache_key, "sources":
                  _versions()["ember_sources"], "times": sorted(program.times), "out": out.tolist()}))
"""


def _graph(seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    b = Builder("cached")
    x = b.input((4, 8), "float32", name="x")
    w = b.const(rng.standard_normal((8, 6)).astype(np.float32))
    b.output(b.emit(Softmax(-1), b.emit(MatMul(), x, w)))
    return b.build()


def _run(program) -> np.ndarray:
    return program.run([np.ones((4, 8), np.float32)])[0].numpy()


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("EMBER_CACHE_DIR", str(directory))
    monkeypatch.delenv("EMBER_CACHE", raising=False)
    return directory


def _child(cache_dir: Path) -> tuple[dict, str]:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "EMBER_CACHE_DIR": str(cache_dir)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_a_new_process_hits_the_cache_and_skips_codegen(cache_dir):
    first, first_log = _child(cache_dir)
    second, second_log = _child(cache_dir)
    if second["sources"] != first["sources"]:
        pytest.skip("ember's ir/ or codegen/ sources changed between the two processes")
    assert not first["hit"]
    assert set(first["times"]) >= _BUILD_STEPS
    assert "built cached" in first_log  # codegen ran
    assert second["hit"]
    assert second["key"] == first["key"]
    assert not _BUILD_STEPS & set(second["times"])
    assert "cache_load" in second["times"]
    assert f"ember: cache hit {first['key']} ({cache_dir / first['key']})" in second_log
    assert "built cached" not in second_log  # codegen skipped
    np.testing.assert_allclose(second["out"], first["out"], rtol=1e-6)


def test_same_graph_in_process_hits_and_matches(cache_dir):
    built = compile_graph(_graph())
    loaded = compile_graph(_graph())
    assert (built.cache_hit, loaded.cache_hit) == (False, True)
    assert loaded.cache_key == built.cache_key
    np.testing.assert_allclose(_run(loaded), _run(built), rtol=1e-6)


def test_other_target_passes_or_weights_miss(cache_dir):
    base = compile_graph(_graph())
    variants = [
        compile_graph(_graph(), {"kind": "llvm", "mcpu": "haswell"}),
        compile_graph(_graph(), passes=["canonicalize"]),
        compile_graph(_graph(seed=1)),
    ]
    keys = {base.cache_key, *(p.cache_key for p in variants)}
    assert len(keys) == 4
    assert not any(p.cache_hit for p in variants)


def _library(entry: Path) -> Path:
    return entry / json.loads((entry / "entry.json").read_text())["library"]


def _truncate(entry: Path) -> None:
    library = _library(entry)
    library.write_bytes(library.read_bytes()[: library.stat().st_size // 2])


def _flip_a_byte(entry: Path) -> None:
    # write a new file and rename it over the old one, as disk corruption would look to a new
    # process: rewriting the inode in place would corrupt the pages this process has mapped
    library = _library(entry)
    data = bytearray(library.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged = library.with_suffix(".damaged")
    damaged.write_bytes(bytes(data))
    damaged.replace(library)


def _garble_sidecar(entry: Path) -> None:
    (entry / "entry.json").write_text('{"format": "ember.cache/1", "key": ')


def _drop_library(entry: Path) -> None:
    _library(entry).unlink()


@pytest.mark.parametrize("damage", [_truncate, _flip_a_byte, _garble_sidecar, _drop_library])
def test_broken_entries_are_rebuilt_never_loaded(cache_dir, caplog, damage):
    want = _run(compile_graph(_graph(), cache=False))
    first = compile_graph(_graph())
    damage(cache_dir / first.cache_key)
    with caplog.at_level(logging.WARNING, logger="ember.codegen.cache"):
        rebuilt = compile_graph(_graph())
    assert not rebuilt.cache_hit
    assert rebuilt.cache_key == first.cache_key
    assert "is broken" in caplog.text
    assert "deleting it and rebuilding" in caplog.text
    np.testing.assert_allclose(_run(rebuilt), want, rtol=1e-6)
    again = compile_graph(_graph())  # the rebuilt entry is whole again and loads
    assert again.cache_hit
    np.testing.assert_allclose(_run(again), want, rtol=1e-6)


def test_disabled_cache_writes_nothing(cache_dir, monkeypatch):
    assert compile_graph(_graph(), cache=False).cache_key is None
    monkeypatch.setenv("EMBER_CACHE", "0")
    program = compile_graph(_graph())
    assert program.cache_key is None
    assert not program.cache_hit
    assert not cache_dir.exists()


def test_a_racing_second_writer_keeps_the_first_entry(cache_dir):
    from ember.codegen.build import build

    program = compile_graph(_graph())
    entry = cache_dir / program.cache_key
    before = (entry / "entry.json").read_text()
    again = store_entry(cache_dir, program.cache_key, build(program.graph, "llvm"), program.graph)
    assert again == entry
    assert (entry / "entry.json").read_text() == before
    assert sorted(p.name for p in cache_dir.iterdir()) == [program.cache_key]  # no staging left


def test_exporting_a_cached_program_copies_its_library(cache_dir, tmp_path):
    compile_graph(_graph())
    loaded = compile_graph(_graph())
    assert loaded.cache_hit
    path = Path(loaded.export(tmp_path / "model.so"))
    assert path.read_bytes() == _library(cache_dir / loaded.cache_key).read_bytes()
    _flip_a_byte(cache_dir / loaded.cache_key)
    with pytest.raises(CodegenError, match="changed on disk; compile again with cache=False"):
        loaded.export(tmp_path / "again.so")


def test_cache_dir_defaults_to_the_xdg_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("EMBER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert config.cache_dir() == tmp_path / "ember"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert config.cache_dir() == Path.home() / ".cache" / "ember"
