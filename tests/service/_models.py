"""Tiny ONNX models for the service tests, made with onnx.helper (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["mlp_onnx"]


def mlp_onnx(path: Path, *, layers: int = 1) -> tuple[Path, np.ndarray, np.ndarray]:
    """x[8,32] @ w1 -> relu (then @ w2[32,16] + b -> relu when layers=2: two distinct kernels);
    returns the file, an input and numpy's output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((32, 32)).astype(np.float32)
    w2 = rng.standard_normal((32, 16)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["y"])]
    weights = [numpy_helper.from_array(w1, "w1")]
    out_shape = [8, 32]
    if layers == 2:
        nodes += [helper.make_node("MatMul", ["y", "w2"], ["z"]),
                  helper.make_node("Add", ["z", "b"], ["zb"]),
                  helper.make_node("Relu", ["zb"], ["out"])]  # fmt: skip
        weights += [numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b, "b")]
        out_shape = [8, 16]
    output = nodes[-1].output[0]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 32])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    x = rng.standard_normal((8, 32)).astype(np.float32)
    expected = np.maximum(x @ w1, 0)
    if layers == 2:
        expected = np.maximum(expected @ w2 + b, 0)
    return path, x, expected
