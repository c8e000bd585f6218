"""ember: an ML compiler with tensor-level code generation on Apache TVM.

`import ember` is cheap: torch, onnx and tvm load only when a model is compiled.
"""

from ember.api import compile
from ember.errors import EmberError

__version__ = "0.1.0"
__all__ = ["EmberError", "__version__", "compile"]
