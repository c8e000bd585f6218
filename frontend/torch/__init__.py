"""The PyTorch frontend: torch.export programs (aten graphs) -> ember Graphs.

`import_module(model, example_inputs, dynamic=...)` exports and imports in one call;
`from_exported_program` and `from_fx` import graphs captured elsewhere. Converters live in one
module per op family, registered in `registry.CONVERTERS`.
"""

from ember.frontend.torch.export import ExportError, decompose, import_module
from ember.frontend.torch.fx import from_fx
from ember.frontend.torch.importer import TorchImport, from_exported_program

__all__ = [
    "ExportError",
    "TorchImport",
    "decompose",
    "from_exported_program",
    "from_fx",
    "import_module",
]
