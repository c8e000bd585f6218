"""The `ember` command line: compile -> run round trips in real subprocesses, inspect, and the
error contract (one line plus a hint on stderr; exit 2 for usage errors, 1 for model errors)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ember.cli import main
from tests.cli.tiny_models import write_onnx

HERE = Path(__file__).resolve().parent


def ember(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "ember.cli", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def onnx_so(work: Path) -> Path:
    write_onnx(work / "tiny.onnx")
    done = ember(
        "compile",
        "tiny.onnx",
        "-o",
        "tiny.so",
        "--dynamic",
        "x:0=batch[1:32]",
        "--emit-source",
        "src",
        "--dump-ir",
        "ir",
        "--print-pass-times",
        cwd=work,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    assert "pass:fold-constants" in done.stdout
    return work / "tiny.so"


def test_onnx_round_trip(onnx_so: Path, work: Path):
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.savez(work / "in.npz", x=x)
    done = ember(
        "run", onnx_so, "-i", "in.npz", "-o", "out.npz", "--repeat", "3", "--profile", cwd=work
    )
    assert done.returncode == 0, done.stderr
    assert "output y: float32[5, 3]" in done.stdout
    assert "latency over 3 x 1 runs" in done.stdout
    assert "fused_matmul_exp_add" in done.stdout  # the --profile table
    w = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    expected = np.exp(x @ w) + np.array([0.5, -1.0, 2.0], np.float32)
    np.testing.assert_allclose(np.load(work / "out.npz")["y"], expected, rtol=1e-5)
    assert (work / "src" / "kernels.ll").exists()
    assert (work / "src" / "main.vm.txt").exists()
    assert (work / "ir" / "00-input.txt").exists()


def test_torch_factory_round_trip(work: Path):
    done = ember(
        "compile",
        "tiny_models:mlp",
        "-o",
        "mlp.so",
        "-p",
        "fold-constants{max-elements=64}",
        "-d",
        "eliminate-common-subexpressions",
        cwd=work,
    )
    assert done.returncode == 0, done.stderr
    assert not done.stderr.strip()
    done = ember("run", "mlp.so", "--fill-mode", "ones", "-o", "mlp_out.npz", cwd=work)
    assert done.returncode == 0, done.stderr
    import torch

    from tests.cli.tiny_models import mlp

    model, _ = mlp()
    with torch.no_grad():
        expected = model(torch.ones(3, 8))
    outputs = np.load(work / "mlp_out.npz")
    np.testing.assert_allclose(outputs[outputs.files[0]], expected[0].numpy(), rtol=1e-5, atol=1e-6)


def test_inspect_library_and_model(onnx_so: Path, work: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["inspect", str(onnx_so), "--ir"]) == 0
    out = capsys.readouterr().out
    for text in (
        "x: float32[batch,4]",
        "y: float32[batch,3]",
        "batch in [1, 32]",
        "parameters: 60 bytes",
        "add x1, exp x1, matmul x1",
        "tvm 0.27",
        "'kind': 'llvm'",
        "graph tiny(",
    ):
        assert text in out
    assert main(["inspect", str(work / "tiny.onnx")]) == 0
    assert "3 nodes (as imported, before passes)" in capsys.readouterr().out


def test_bench_against_onnxruntime(work: Path, onnx_so: Path, capsys: pytest.CaptureFixture[str]):
    code = main(
        [
            "bench",
            str(work / "tiny.onnx"),
            "--input-shapes",
            "x:[8,4]",
            "--baselines",
            "onnxruntime,eager",
            "--repeat",
            "3",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[1].startswith("ember")
    assert "onnxruntime" in out
    assert "(torch models only)" in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["compile", "missing.onnx"], 2, "no such file: missing.onnx"),
        (
            ["compile", "tiny_models:not_a_pair"],
            2,
            "must return \\(model, example_inputs\\), got int",
        ),
        (
            ["compile", "tiny.onnx", "--input-shapes", "x:[2]"],
            2,
            "input 'x' has rank 2, got \\[2\\]",
        ),
        (
            ["compile", "tiny.onnx", "--input-shapes", "x=2"],
            2,
            "--input-shapes: cannot parse 'x=2'",
        ),
        (["compile", "tiny.onnx", "--dynamic", "x0batch"], 2, "--dynamic: cannot parse 'x0batch'"),
        (["compile", "tiny.onnx", "-p", "fold-everything"], 2, "unknown pass 'fold-everything'"),
        (["compile", "tiny.onnx", "-d", "nothing"], 2, "--disable-pass: unknown pass 'nothing'"),
        (["compile", "tiny.onnx", "--target", "tpu"], 1, "CodegenError: unknown target 'tpu'"),
        (["run", "tiny.onnx"], 1, "ArtifactError: tiny.onnx is not a shared library"),
        (["run", "tiny.so", "--repeat", "0"], 2, "expected a positive integer, got '0'"),
        (["run", "tiny.so", "-i", "bad.npz"], 1, "InputError: input 'x' .*got dtype int64"),
        (
            ["run", "tiny.so", "-i", "wrong_names.npz"],
            2,
            "holds \\['a', 'b'\\]; the model's inputs are \\['x'\\]",
        ),
        (
            ["bench", "tiny.onnx", "--baselines", "tensorflow"],
            2,
            "--baselines: unknown \\['tensorflow'\\]",
        ),
        (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    ],
)
def test_errors_are_one_line_and_a_hint(
    onnx_so: Path,
    work: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args,
    code,
    message,
):
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(HERE))
    np.savez(work / "bad.npz", x=np.zeros((2, 4), np.int64))
    np.savez(work / "wrong_names.npz", a=np.zeros(1), b=np.zeros(1))
    try:
        got = main(args)
    except SystemExit as exit_:  # argparse's own errors
        got = exit_.code
    err = capsys.readouterr().err
    assert got == code, err
    lines = err.strip().splitlines()
    assert lines[0].startswith("ember")
    assert ": error: " in lines[0]
    assert lines[-1].startswith("hint: ")
    assert "Traceback" not in err
    import re

    assert re.search(message, lines[0]), lines[0]


def test_subprocess_exit_codes(onnx_so: Path, work: Path):
    done = ember("run", "missing.so", cwd=work)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert (
        done.stderr.splitlines()[0]
        == "ember run: error: ArtifactError: cannot read missing.so: No such file or directory"
    )
    done = ember("compile", cwd=work)
    assert done.returncode == 2
    assert "the following arguments are required: MODEL" in done.stderr


def test_every_subcommand_has_help_with_an_example(capsys: pytest.CaptureFixture[str]):
    for command in ("compile", "run", "inspect", "bench"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert "example:" in out
        assert f"ember {command}" in out
