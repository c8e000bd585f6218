"""ONNX models whose shape operands are graph inputs compile per distinct value (a guard)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

import ember  # noqa: E402
from ember.errors import InputError  # noqa: E402


def _reshape_model() -> object:
    node = helper.make_node("Reshape", ["x", "shape"], ["y"])
    relu = helper.make_node("Relu", ["y"], ["z"])
    graph = helper.make_graph(
        [node, relu],
        "reshape_by_input",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_shape_input_is_specialized_and_guarded():
    cm = ember.compile(_reshape_model())
    x = np.arange(-6, 6, dtype=np.float32).reshape(2, 6)
    (out,) = cm(x, np.array([3, 4], np.int64))
    np.testing.assert_array_equal(out, np.maximum(x.reshape(3, 4), 0))
    cm(x + 1, np.array([3, 4], np.int64))
    assert cm.compile_count == 1  # same shape value: the build is reused
    (out,) = cm(x, np.array([4, 3], np.int64))
    np.testing.assert_array_equal(out, np.maximum(x.reshape(4, 3), 0))
    assert cm.compile_count == 2  # a new value: one more build


def test_wrong_input_count_is_an_input_error():
    cm = ember.compile(_reshape_model())
    with pytest.raises(InputError, match=r"expected 2 inputs \(x, shape\), got 1"):
        cm(np.zeros((2, 6), np.float32))
