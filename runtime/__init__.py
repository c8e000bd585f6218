"""Load and run compiled ember models with numpy and the TVM runtime only."""

from ember.runtime.executor import Executor, to_tvm

__all__ = ["Executor", "to_tvm"]
