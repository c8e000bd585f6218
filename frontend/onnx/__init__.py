"""The ONNX frontend: `from_onnx(model)` imports an ONNX model (opset >= 13) as an ember Graph."""

from ember.frontend.onnx.context import ConstantInputError
from ember.frontend.onnx.importer import from_onnx, load_model
from ember.frontend.onnx.specialize import import_specialized, input_names

__all__ = ["ConstantInputError", "from_onnx", "import_specialized", "input_names", "load_model"]
