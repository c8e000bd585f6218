"""`SharedWeights`: one packed 4-bit weight set for every compiled step of an `ember.llm` engine.

`ember.llm.compile(model, quantize=...)` quantizes each eligible linear layer once (uint4,
asymmetric round-to-nearest per group of `group_size` input channels, `int4_matmul`'s panel
layout) and lifts the packed arrays out of the step graphs: every step (prefill, decode, QSPEC's
draft and verification) takes them as inputs, and the engine passes the same TVM tensors to all
of them. Two kernels read those bytes:

- W4A16 (`int4_matmul`): float32 activations, the weight dequantized in registers;
- W4A4 (`int4_panel_group_matmul`, ir/ops/quant_shared.py): activations quantized per token
  and group to 4 bits at run time, Atom-style outliers in 8 bits (the `outliers` channels with
  the largest calibration magnitudes choose whole groups that keep 8-bit activations: the
  groups are the weights', which cannot be reordered without changing the W4A16 weights),
  integer products with `vpdpbusd`. Its only array of its own is `comp` (int32 per group and
  column, 1/16 of the packed bytes), which removes the activations' unsigned offset.

Calibration (outlier groups only) runs the float model on `QuantConfig.calibration` token
batches, or random tokens with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ember.errors import UnsupportedError
from ember.quantize import QuantConfig

__all__ = ["SharedWeights", "WeightedProgram", "quant_config"]

log = logging.getLogger(__name__)


def quant_config(quantize: Any) -> QuantConfig:
    """`quantize=` of `ember.llm.compile` as a QuantConfig, checked for what ember.llm does."""
    config = QuantConfig(quantize) if isinstance(quantize, str) else quantize
    if not isinstance(config, QuantConfig):
        raise UnsupportedError(
            f"ember.llm.compile: quantize must be 'w4a16', 'w4a4' or an ember.QuantConfig, "
            f"got {quantize!r}"
        )
    if config.scheme not in ("w4a16", "w4a4"):
        raise UnsupportedError(
            f"ember.llm.compile: quantize scheme {config.scheme!r} is not supported; use w4a16 "
            f"or w4a4 (one 4-bit weight set, see docs/qspec.md)"
        )
    if config.method == "awq":
        raise UnsupportedError(
            "ember.llm.compile: AWQ scales are not applied to the shared 4-bit weights; use "
            "QuantConfig('w4a16', method='rtn') or leave method unset (round-to-nearest)"
        )
    return config


@dataclass
class _Linear:
    """One quantized linear layer: the names of its arrays in `SharedWeights.arrays`."""

    p: str
    s: str
    o: str
    comp: str
    outlier_groups: np.ndarray  # bool [groups]: groups whose activations keep 8 bits


@dataclass
class SharedWeights:
    """The packed weights of a model's linear layers, by content hash of the float weight."""

    group_size: int
    linears: dict[bytes, _Linear] = field(default_factory=dict)
    arrays: dict[str, Any] = field(default_factory=dict)  # name -> TVM tensor (built once)

    @classmethod
    def from_model(cls, model: Any, config: QuantConfig) -> SharedWeights:
        g = config.group_size
        outlier_max = _calibrate(model, config) if config.resolved_method != "rtn" else {}
        shared = cls(g)
        for name, module in model.named_modules():
            if not isinstance(module, torch.nn.Linear):
                continue
            w = module.weight.detach().float().numpy()  # [N, K]
            n, k = w.shape
            if k % g or n % 16 or g % 4:
                continue
            stats = outlier_max.get(name)
            groups = np.zeros(k // g, bool)
            if stats is not None:
                kept = min(-(-config.outliers // g), (k // g) // 2)
                by_group = stats.reshape(k // g, g).max(axis=1)
                groups[np.argsort(by_group, kind="stable")[len(groups) - kept :]] = True
            shared.add(name, np.ascontiguousarray(w.T), groups)
        return shared

    def add(self, name: str, w: np.ndarray, outlier_groups: np.ndarray) -> None:
        """Quantize W[K, N] (round-to-nearest uint4 per group) under `name`."""
        from ember.ir.ops.quant_pack import pack_int4_panels
        from ember.ir.ops.quant_shared import panel_levels
        from ember.passes.quantize_w4a16 import quantize_groups

        g = self.group_size
        q, s, o = quantize_groups(w, g)
        p = pack_int4_panels(q)
        levels = panel_levels(p, s, o, g).astype(np.int32).reshape(-1, g, w.shape[1]).sum(axis=1)
        offsets = np.where(outlier_groups, 128, 8).astype(np.int32)[:, None]
        arrays = {"p": p, "s": s, "o": o, "comp": (offsets * levels).astype(np.int32)}
        for part, array in arrays.items():
            self.arrays[f"{name}.{part}"] = array
        self.linears[_key(w)] = _Linear(*(f"{name}.{part}" for part in arrays), outlier_groups)

    @property
    def weight_bytes(self) -> int:
        """Bytes of the packed weights both kernels read (nibbles, scales, offsets)."""
        return sum(_nbytes(self.arrays[n]) for lin in self.linears.values()
                   for n in (lin.p, lin.s, lin.o))  # fmt: skip

    @property
    def draft_bytes(self) -> int:
        """Bytes only the W4A4 kernel reads (`comp`)."""
        return sum(_nbytes(self.arrays[lin.comp]) for lin in self.linears.values())

    def rewrite(self, graph: Any, activation_bits: int) -> tuple[Any, list[str]]:
        """Every linear with a packed weight => int4_matmul (16) or int4_panel_group_matmul (4)
        reading the packed arrays as new graph inputs; returns the graph and their names."""
        from ember.ir import rewrite
        from ember.ir.ops import Int4MatMul, Int4PanelGroupMatMul, QuantizeRows, Where
        from ember.passes._match import linear_rule

        g = self.group_size
        names: list[str] = []
        quantized: dict[tuple[Any, bytes], tuple[Any, Any]] = {}

        def weight_input(b: Any, name: str) -> Any:
            array = self.arrays[name]
            names.append(name)
            return b.input(tuple(array.shape), str(array.dtype), name.replace(".", "_"))

        def activations(b: Any, x: Any, outliers: np.ndarray) -> tuple[Any, Any]:
            key = (x, outliers.tobytes())
            if key not in quantized:
                xq, xs = b.emit_multi(QuantizeRows(bits=4, group_size=g), x)
                if outliers.any():
                    wide_q, wide_s = b.emit_multi(QuantizeRows(bits=8, group_size=g), x)
                    columns = b.const(outliers.repeat(g))
                    xq = b.emit(Where(), columns, wide_q, xq)
                    xs = b.emit(Where(), b.const(outliers), wide_s, xs)
                quantized[key] = (xq, xs)
            return quantized[key]

        def rewrite_linear(b: Any, x: Any, w: np.ndarray, _: Any) -> Any:
            linear = self.linears.get(_key(w))
            if linear is None:
                return None
            p, s, o = (weight_input(b, n) for n in (linear.p, linear.s, linear.o))
            if activation_bits == 16:
                return b.emit(Int4MatMul(group_size=g), x, p, s, o)
            xq, xs = activations(b, x, linear.outlier_groups)
            comp = weight_input(b, linear.comp)
            return b.emit(Int4PanelGroupMatMul(group_size=g), xq, xs, p, s, o, comp)

        return rewrite(graph, linear_rule(rewrite_linear)), names

    def compile(self, graph: Any, options: dict[str, Any]) -> WeightedProgram:
        """Rewrite (options["activation_bits"]) and build `graph`; the program takes the shared
        arrays after its own inputs."""
        import tvm

        from ember.api import compile_graph

        rewritten, names = self.rewrite(graph, options.get("activation_bits", 16))
        program = compile_graph(rewritten, options["target"], (), cache=options["cache"])
        for name in names:  # TVM tensors made once: every program gets the same buffers
            if isinstance(self.arrays[name], np.ndarray):
                self.arrays[name] = tvm.runtime.tensor(self.arrays[name])
        return WeightedProgram(program, [self.arrays[n] for n in names])


@dataclass
class WeightedProgram:
    """A step Program whose trailing inputs are shared weight arrays, passed on every run."""

    program: Any
    weights: list[Any]

    def run(self, arrays: list[Any]) -> list[Any]:
        return self.program.run([*arrays, *self.weights])


def _key(w: np.ndarray) -> bytes:
    """Identity of a float weight W[K, N], however the graph stores it (W or W^T)."""
    data = np.ascontiguousarray(w, dtype=np.float32)
    return hashlib.blake2b(data.tobytes(), digest_size=16).digest() + bytes(str(w.shape), "ascii")


def _nbytes(array: Any) -> int:
    return int(np.prod(array.shape)) * np.dtype(str(array.dtype)).itemsize


def _calibrate(model: Any, config: QuantConfig) -> dict[str, np.ndarray]:
    """max |x| per input channel of every linear layer over the calibration batches."""
    batches = config.calibration
    if batches is None:
        warnings.warn(
            f"quantize: no calibration data; choosing the 8-bit outlier groups from "
            f"{config.random_batches} random token batches. Real text calibrates better "
            f"(QuantConfig(calibration=[(input_ids,), ...]))",
            stacklevel=3,
        )
        generator = torch.Generator().manual_seed(0)
        vocab = model.config.vocab_size
        batches = [(torch.randint(0, vocab, (1, 32), generator=generator),)
                   for _ in range(config.random_batches)]  # fmt: skip
    found: dict[str, np.ndarray] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):

            def record(_: Any, args: tuple[Any, ...], name: str = name) -> None:
                x = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(dim=0).numpy()
                found[name] = np.maximum(found[name], x) if name in found else x

            hooks.append(module.register_forward_pre_hook(record))
    try:
        with torch.no_grad():
            for batch in batches:
                ids = torch.as_tensor(np.asarray(batch[0])).long()
                model(ids[None] if ids.dim() == 1 else ids)
    finally:
        for hook in hooks:
            hook.remove()
    return found
