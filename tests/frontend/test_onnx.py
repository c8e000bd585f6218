"""The ONNX frontend: tiny graphs built with onnx.helper, run by the reference interpreter and
compared with onnxruntime; dynamic dims, initializers, shape folding and error messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from ember.errors import EmberError, InputError, UnsupportedError  # noqa: E402
from ember.frontend.onnx import ConstantInputError, from_onnx  # noqa: E402
from ember.ir import interpret, ops, sym  # noqa: E402

F32 = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers=(), opset=18, name="g"):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def _ort(model, *arrays):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, arrays, strict=True)))


def _check(model, *arrays):
    got = interpret(from_onnx(model), *arrays)
    for g, e in zip(got, _ort(model, *arrays), strict=True):
        assert g.dtype == e.dtype
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


def test_mlp_with_initializers_matches_onnxruntime(rng):
    w = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Add", ["h", "b"], ["z"]),
        helper.make_node("Relu", ["z"], ["r"]),
        helper.make_node("Softmax", ["r"], ["y"], axis=-1),
    ]
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, [3, 8])],
                   [helper.make_tensor_value_info("y", F32, [3, 4])], [w, b])  # fmt: skip
    g = from_onnx(model)
    assert g.input_names == ("x",)
    assert g.output_names == ("y",)
    assert len(g.consts) == 2
    _check(model, rng.standard_normal((3, 8)).astype(np.float32))


def test_input_that_is_also_an_initializer_is_a_constant(rng):
    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    nodes = [helper.make_node("Add", ["x", "w"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, [2, 2]),
                           helper.make_tensor_value_info("w", F32, [2, 2])],
                   [helper.make_tensor_value_info("y", F32, [2, 2])], [w])  # fmt: skip
    assert from_onnx(model).input_names == ("x",)


def test_dynamic_dims_become_symbols_and_shape_chain_folds(rng):
    # y = reshape(x, [shape(x)[0], -1]): the Shape -> Gather -> Unsqueeze -> Concat chain
    # must resolve to a symbolic reshape attribute, not a run-time shape computation.
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes"], ["batch1"]),
        helper.make_node("Concat", ["batch1", "minus_one"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([0], np.int64), "axes"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus_one")]  # fmt: skip
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, ["batch", 3, None])],
                   [helper.make_tensor_value_info("y", F32, ["batch", None])], inits)  # fmt: skip
    g = from_onnx(model)
    batch = sym("batch")
    assert g.inputs[0].type.shape[0] == batch
    assert not isinstance(g.inputs[0].type.shape[2], int)  # unnamed dim: a fresh symbol
    reshapes = [n.op for n in g.nodes if isinstance(n.op, ops.Reshape)]
    assert len(g.nodes) == 1
    assert reshapes[0].shape[0] == batch
    for shape in [(2, 3, 5), (4, 3, 1)]:
        _check(model, rng.standard_normal(shape).astype(np.float32))


def test_conv_pool_and_norm_match_onnxruntime(rng):
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], strides=[2, 1]),
        helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], ceil_mode=1),
        helper.make_node("InstanceNormalization", ["p", "s", "b"], ["y"]),
    ]
    inits = [w, numpy_helper.from_array(np.full(4, 1.5, np.float32), "s"),
             numpy_helper.from_array(np.zeros(4, np.float32), "b")]  # fmt: skip
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, [1, 3, 9, 8])],
                   [helper.make_tensor_value_info("y", F32, None)], inits)  # fmt: skip
    _check(model, rng.standard_normal((1, 3, 9, 8)).astype(np.float32))


def test_function_op_is_expanded(rng):
    nodes = [helper.make_node("LayerNormalization", ["x", "s"], ["y"], axis=-1)]
    inits = [numpy_helper.from_array(np.full(6, 2.0, np.float32), "s")]
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, [2, 6])],
                   [helper.make_tensor_value_info("y", F32, [2, 6])], inits)  # fmt: skip
    _check(model, rng.standard_normal((2, 6)).astype(np.float32))
    nll = [helper.make_node("NegativeLogLikelihoodLoss", ["x", "t"], ["y"], reduction="mean")]
    model = _model(nll, [helper.make_tensor_value_info("x", F32, [3, 5]),
                         helper.make_tensor_value_info("t", TensorProto.INT64, [3])],
                   [helper.make_tensor_value_info("y", F32, [])])  # fmt: skip
    _check(model, rng.standard_normal((3, 5)).astype(np.float32), np.array([0, 4, 2], np.int64))


def test_unsupported_ops_are_listed_once_with_counts():
    nodes = [
        helper.make_node("NonZero", ["x"], ["a"], name="nz_1"),
        helper.make_node("Relu", ["x"], ["b"]),
        helper.make_node("Unique", ["x"], ["c"], name="u_1"),
        helper.make_node("Unique", ["x"], ["d"], name="u_2"),
    ]
    outs = [helper.make_tensor_value_info(n, F32, None) for n in "abcd"]
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, [4])], outs, name="tiny")
    with pytest.raises(UnsupportedError) as err:
        from_onnx(model)
    message = str(err.value)
    assert message.startswith("2 ONNX ops have no converter (model: tiny)")
    assert "NonZero" in message
    assert "x1" in message
    assert "first at node 'nz_1'" in message
    assert "Unique" in message
    assert "x2" in message
    assert "first at node 'u_1'" in message


def test_unsupported_attribute_names_op_node_and_attribute():
    nodes = [
        helper.make_node(
            "BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn", training_mode=1
        )
    ]
    inits = [numpy_helper.from_array(np.ones(2, np.float32), n) for n in "sbmv"]
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, [1, 2, 3])],
                   [helper.make_tensor_value_info("y", F32, None)], inits)  # fmt: skip
    with pytest.raises(
        UnsupportedError, match="BatchNormalization node 'bn': attribute training_mode=1"
    ):
        from_onnx(model)


def test_runtime_shape_input_names_the_graph_input():
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, [2, 3]),
                           helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                   [helper.make_tensor_value_info("y", F32, None)])  # fmt: skip
    with pytest.raises(ConstantInputError, match="graph input 'shape'") as err:
        from_onnx(model)
    assert err.value.input_name == "shape"


def test_truncated_file_raises_input_error(tmp_path: Path):
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, [2])],
                   [helper.make_tensor_value_info("y", F32, [2])],
                   [numpy_helper.from_array(np.ones(1000, np.float32), "unused")])  # fmt: skip
    data = model.SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.onnx.*truncated") as err:
        from_onnx(path)
    assert isinstance(err.value, EmberError)
    with pytest.raises(InputError, match="does not exist"):
        from_onnx(tmp_path / "missing.onnx")


def test_old_opset_is_upgraded(rng):
    nodes = [helper.make_node("Unsqueeze", ["x"], ["y"], axes=[0])]  # axes attribute: opset < 13
    model = _model(nodes, [helper.make_tensor_value_info("x", F32, [3])],
                   [helper.make_tensor_value_info("y", F32, [1, 3])], opset=11)  # fmt: skip
    assert interpret(from_onnx(model), np.ones(3, np.float32))[0].shape == (1, 3)


@pytest.mark.slow
def test_conformance_script_reports_results(tmp_path: Path):
    root = Path(__file__).resolve().parents[2]
    pattern = "^test_(abs|add|relu|reshape|softmax|transpose|concat|gather)"
    cmd = [sys.executable, "-m", "benchmarks.onnx_conformance", "--limit", "40", "--interpreter",
           "--filter", pattern, "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "ember" in done.stdout
    assert "ort" in done.stdout
    report = json.loads((tmp_path / "onnx_conformance_interpreter.json").read_text())
    assert report["summary"]["ember"]["total"] == 40
    assert report["summary"]["ember"]["pass"] >= 30
    assert (tmp_path / "onnx_conformance_interpreter.md").exists()
    assert "needed IR lowered" in (tmp_path / "onnx_conformance_interpreter.md").read_text()
