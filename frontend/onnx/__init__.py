"""The ONNX frontend: `from_onnx(model)` imports an ONNX model (opset >= 13) as an ember Graph."""

from ember.frontend.onnx.context import ConstantInputError
from ember.frontend.onnx.importer import from_onnx

__all__ = ["ConstantInputError", "from_onnx"]
