"""Tiny models for the command-line tests: `factory` functions returning (model, example_inputs),
and an ONNX model made with onnx.helper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class TinyMLP(torch.nn.Module):
    """x @ W1 -> relu -> @ W2, plus a second output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = torch.nn.Linear(8, 16)
        self.fc2 = torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.fc1(x))
        return self.fc2(h), h.sum(dim=-1)


def mlp() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    """TinyMLP with a batch of 3."""
    return TinyMLP().eval(), (torch.randn(3, 8),)


def not_a_pair() -> int:
    return 42


def write_onnx(path: Path) -> Path:
    """y = exp(x @ W) + b with x: float32[batch, 4] (dim_param 'batch')."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "W")
    b = numpy_helper.from_array(np.array([0.5, -1.0, 2.0], dtype=np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Exp", ["xw"], ["e"]),
            helper.make_node("Add", ["e", "b"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.save(model, path)
    return path
