"""The C++ loader: build `ember_run` with cmake against the wheels' tvm-ffi and TVM runtime, run
an exported model and compare with the Python loader."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ember.runtime

CPP = Path(__file__).resolve().parents[2] / "runtime" / "cpp"

pytestmark = pytest.mark.skipif(
    not (shutil.which("cmake") and shutil.which("g++")), reason="needs cmake and g++"
)


@pytest.fixture(scope="module")
def ember_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = tmp_path_factory.mktemp("ember_run")
    for cmd in (
        ["cmake", "-S", str(CPP), "-B", str(build), f"-DPython_EXECUTABLE={sys.executable}"],
        ["cmake", "--build", str(build), "-j2"],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    return build / "ember_run"


def _run(ember_run: Path, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ember_run), *map(str, args)], capture_output=True, text=True, timeout=60
    )


def test_cpp_matches_python(
    ember_run: Path, tiny_so: Path, tmp_path: Path, rng: np.random.Generator
):
    x, y = (rng.standard_normal((7, 4)).astype(np.float32) for _ in range(2))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    outs = [tmp_path / "out.npy", tmp_path / "twice.npy"]
    done = _run(
        ember_run,
        tiny_so,
        tmp_path / "x.npy",
        tmp_path / "y.npy",
        "--out",
        outs[0],
        "--out",
        outs[1],
    )
    assert done.returncode == 0, done.stderr
    assert "output 0 out: float32[7,4]" in done.stdout
    expected = ember.runtime.load(tiny_so)(x, y)
    for path, want in zip(outs, expected, strict=True):
        np.testing.assert_array_equal(np.load(path), want)


def test_cpp_errors(ember_run: Path, tiny_so: Path, tmp_path: Path):
    np.save(tmp_path / "i.npy", np.zeros((3, 4), np.int64))
    np.save(tmp_path / "big.npy", np.zeros((65, 4), np.float32))
    cut = tmp_path / "cut.so"
    cut.write_bytes(tiny_so.read_bytes()[:4000])
    cases = [
        ((tiny_so,), 1, r"expected 2 inputs \(x: float32\[n,4\], y: float32\[n,4\]\), got 0"),
        ((tiny_so, tmp_path / "i.npy", tmp_path / "i.npy"), 1, "input 'x' .*got dtype int64"),
        (
            (tiny_so, tmp_path / "big.npy", tmp_path / "big.npy"),
            1,
            r"dim n=65 is outside \[1, 64\]",
        ),
        ((cut, tmp_path / "i.npy"), 1, r"is truncated \(4000 bytes"),
        ((), 2, "missing the model .so"),
    ]
    for args, code, message in cases:
        done = _run(ember_run, *args)
        assert done.returncode == code, (args, done.stderr)
        assert done.stderr.startswith("ember_run: error:"), done.stderr
        assert re.search(message, done.stderr), done.stderr
