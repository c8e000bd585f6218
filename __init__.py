"""ember: an ML compiler with tensor-level code generation on Apache TVM.

`import ember` is cheap: torch, onnx and tvm load only when a model is compiled, and the compiler
itself (`ember.api` and the IR) loads on first use of `ember.compile`, so a deployed model that
only does `import ember.runtime` carries no compiler modules.
"""

from __future__ import annotations

from typing import Any

from ember.errors import EmberError

__version__ = "0.1.0"
__all__ = ["EmberError", "QuantConfig", "__version__", "compile"]


def __getattr__(name: str) -> Any:
    if name == "compile":
        from ember.api import compile

        return compile
    if name == "autobatch":
        import ember.autobatch

        return ember.autobatch
    if name == "distributed":
        import ember.distributed

        return ember.distributed
    if name == "llm":  # the decoding runtime: ember.llm.compile(hf_model, max_length=...)
        import ember.llm

        return ember.llm
    if name == "QuantConfig":
        from ember.quantize import QuantConfig

        return QuantConfig
    raise AttributeError(f"module 'ember' has no attribute {name!r}")
