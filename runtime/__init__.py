"""Load and run compiled ember models with numpy and the TVM runtime only.

`load(path)` opens an exported `.so` without the compiler (see `artifact`); `Executor` runs an
in-memory executable for `ember.compile`.
"""

from ember.runtime.artifact import LoadedModel, load
from ember.runtime.executor import Executor, to_tvm
from ember.runtime.metadata import Metadata, TensorSpec

__all__ = ["Executor", "LoadedModel", "Metadata", "TensorSpec", "load", "to_tvm"]
