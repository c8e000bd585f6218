"""`ember bench`: time a compiled model against torch eager, torch.compile and onnxruntime.

Every implementation runs on the same inputs, its first output is compared with ember's before
timing, and the latencies come from `ember.runtime.timing` (warmup, repeat x number).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ember.model_files import ModelSource
from ember.runtime.timing import Latency, measure_latency

__all__ = ["BASELINES", "BenchRow", "run_bench"]

BASELINES = ("eager", "torch.compile", "onnxruntime")


@dataclass(frozen=True)
class BenchRow:
    """One implementation's latency and its largest difference from ember's first output."""

    name: str
    latency: Latency | None
    max_abs_diff: float | None = None
    note: str = ""


def run_bench(
    source: ModelSource,
    ember_fn: Callable[[], list[np.ndarray]],
    arrays: Sequence[np.ndarray],
    baselines: Sequence[str],
    *,
    repeat: int,
    number: int,
) -> list[BenchRow]:
    """Time ember, then each applicable baseline; inapplicable ones get a row with a note."""
    reference = np.asarray(ember_fn()[0])
    rows = [BenchRow("ember", measure_latency(ember_fn, repeat=repeat, number=number))]
    for name in baselines:
        try:
            fn, why_not = _baseline(name, source, arrays)
            if fn is None:
                rows.append(BenchRow(name, None, note=why_not))
                continue
            diff = float(
                np.max(np.abs(np.asarray(fn(), dtype=np.float64) - reference), initial=0.0)
            )
            rows.append(BenchRow(name, measure_latency(fn, repeat=repeat, number=number), diff))
        except Exception as err:  # a baseline that cannot run is reported, not fatal
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            rows.append(BenchRow(name, None, note=f"failed: {first[:120]}"))
    return rows


def _baseline(name: str, source: ModelSource, arrays: Sequence[np.ndarray]) -> tuple[Any, str]:
    if name == "onnxruntime":
        if source.kind != "onnx":
            return None, "ONNX models only"
        return _onnxruntime(source.path, arrays)
    if source.eager is None:
        return None, "torch models only"
    import torch

    fn = source.eager if name == "eager" else torch.compile(source.eager)
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]

    def call() -> np.ndarray:
        with torch.no_grad():
            out = fn(*tensors)
        first = out if isinstance(out, torch.Tensor) else torch.utils._pytree.tree_leaves(out)[0]
        return first.detach().numpy()

    return call, ""


def _onnxruntime(path: str, arrays: Sequence[np.ndarray]) -> tuple[Any, str]:
    try:
        import onnxruntime
    except ImportError:
        return None, "onnxruntime is not installed (pip install onnxruntime)"
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {i.name: a for i, a in zip(session.get_inputs(), arrays, strict=True)}
    return (lambda: session.run(None, feeds)[0]), ""
