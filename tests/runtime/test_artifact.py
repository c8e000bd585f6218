"""Exported libraries: metadata, the fresh-process loader (numpy + TVM runtime only), input
checks, and clear errors for damaged, foreign or incompatible files."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import ember
import ember.runtime
from ember.codegen.build import build
from ember.codegen.export import export_library, graph_metadata
from ember.errors import ArtifactError, EmberError, InputError
from ember.runtime.library import read_metadata
from tests.runtime._models import WEIGHT, two_input_graph


def _reference(x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    return [np.exp(x @ WEIGHT), x + y]


def test_metadata_describes_the_signature(tiny_so: Path):
    meta = read_metadata(tiny_so)
    assert [str(s) for s in meta.inputs] == ["x: float32[n,4]", "y: float32[n,4]"]
    assert [str(s) for s in meta.outputs] == ["out: float32[n,4]", "twice: float32[n,4]"]
    assert meta.symbol_ranges == {"n": (1, 64)}
    assert meta.target["kind"] == "llvm"
    assert meta.versions["ember"] == ember.__version__
    assert meta.versions["tvm"].startswith("0.27")
    assert meta.param_bytes == WEIGHT.nbytes
    assert meta.op_histogram == {"add": 1, "exp": 1, "matmul": 1}
    assert "matmul" in meta.ir


def test_load_and_call_in_this_process(tiny_so: Path, rng: np.random.Generator):
    model = ember.runtime.load(tiny_so)
    for n in (1, 5, 64):
        x, y = (rng.standard_normal((n, 4)).astype(np.float32) for _ in range(2))
        for got, want in zip(model(x, y), _reference(x, y), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5)


def test_unaligned_and_strided_inputs_are_copied(tiny_so: Path):
    model = ember.runtime.load(tiny_so)
    base = np.arange(41, dtype=np.float32)[1:].reshape(5, 8)  # offset by 4 bytes, then strided
    x, y = base[:, ::2], base[:, 1::2]
    np.testing.assert_allclose(model(x, y)[1], x + y)


def test_fresh_process_imports_no_compiler(tiny_so: Path):
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        import ember.runtime
        model = ember.runtime.load({str(tiny_so)!r})
        x = np.ones((3, 4), np.float32)
        out, twice = model(x, x)
        assert out.shape == (3, 4) and float(twice[0, 0]) == 2.0
        heavy = ("torch", "onnx", "tvm", "tvm.relax", "sympy", "ember.api", "ember.ir",
                 "ember.codegen", "ember.frontend", "ember.passes")
        print(sorted(m for m in heavy if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("shapes", "dtype", "message"),
    [
        ([(3, 4)], "float32", r"expected 2 inputs \(x: float32\[n,4\], y: float32\[n,4\]\), got 1"),
        (
            [(3, 4), (3, 4)],
            "float64",
            r"input 'x' \(expected float32\[n,4\]\): got dtype float64; cast it to float32",
        ),
        ([(3, 4, 1), (3, 4)], "float32", r"got rank 3 shape \[3, 4, 1\]; expected rank 2"),
        ([(3, 5), (3, 5)], "float32", r"axis 1 is 5 but must be 4"),
        ([(3, 4), (2, 4)], "float32", r"input 'y' .*axis 0 is 2 but must be n = 3"),
        ([(65, 4), (65, 4)], "float32", r"dim n=65 violates its constraint n in \[1, 64\]"),
    ],
)
def test_bad_inputs_raise_input_error(tiny_so: Path, shapes, dtype, message):
    model = ember.runtime.load(tiny_so)
    with pytest.raises(InputError, match=message):
        model(*(np.zeros(s, dtype) for s in shapes))


def test_truncated_library(tiny_so: Path, tmp_path: Path):
    cut = tmp_path / "cut.so"
    cut.write_bytes(tiny_so.read_bytes()[:4000])
    with pytest.raises(ArtifactError, match=r"cut.so is truncated \(4000 bytes"):
        ember.runtime.load(cut)


def test_not_a_library(tmp_path: Path):
    path = tmp_path / "model.so"
    path.write_text("hello")
    with pytest.raises(ArtifactError, match="is not a shared library"):
        ember.runtime.load(path)
    with pytest.raises(ArtifactError, match=r"cannot read .*missing\.so: No such file"):
        ember.runtime.load(tmp_path / "missing.so")


def test_foreign_library():
    import tvm_ffi.libinfo

    with pytest.raises(
        ArtifactError, match=r"is not an ember model \(it has no ember_artifact_metadata symbol"
    ):
        ember.runtime.load(tvm_ffi.libinfo.find_libtvm_ffi())


def test_incompatible_format_version(tmp_path: Path):
    g = two_input_graph()
    result = build(g, "llvm")
    meta = graph_metadata(g, result.target)
    future = type(meta)(**{**meta.__dict__, "format_version": 99})
    path = export_library(result.executable, future, tmp_path / "future.so")
    with pytest.raises(ArtifactError, match=r"artifact format 99 .*reads format 1; re-export"):
        ember.runtime.load(path)
    meta_doc = json.loads(future.to_json())
    assert meta_doc["format"] == "ember-artifact"


def test_compiled_model_export_needs_a_compiled_program(tmp_path: Path):
    lazy = ember.compile(lambda x: x + 1)
    with pytest.raises(EmberError, match="has not been compiled yet: call it once"):
        lazy.export(tmp_path / "lazy.so")


def test_compiled_onnx_model_exports(tmp_path: Path, rng: np.random.Generator):
    from tests.cli.tiny_models import write_onnx

    compiled = ember.compile(str(write_onnx(tmp_path / "tiny.onnx")))
    path = compiled.export(tmp_path / "onnx.so")
    x = rng.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(ember.runtime.load(path)(x)[0], compiled(x)[0], rtol=1e-6)
