"""`QuantConfig` and `quantize_graph`: calibrate a graph, then run one quantization pass on it.

Glue between `ember.compile(..., quantize=QuantConfig(...))` / `ember compile --quantize` and the
passes `quantize-w8a8`, `quantize-w4a16` and `quantize-w4a4` (passes/quantize_*.py). Calibration
runs the graph in the reference interpreter on sample inputs and records, for every matmul with
a constant weight, the rows of its activation input: the statistics SmoothQuant, AWQ and Atom
need.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ember.errors import EmberError, UsageError

__all__ = ["QuantConfig", "calibrate", "parse_quantize", "quantize_graph"]

log = logging.getLogger(__name__)

SCHEMES = {  # scheme: (pass, default method, methods)
    "w8a8": ("quantize-w8a8", "smoothquant", ("smoothquant", "rtn")),
    "w4a16": ("quantize-w4a16", "awq", ("awq", "rtn")),
    "w4a4": ("quantize-w4a4", "atom", ("atom", "rtn")),
}
MAX_ROWS = 512  # calibration rows kept per matmul


@dataclass(frozen=True)
class QuantConfig:
    """What to quantize and how.

    scheme: "w8a8" (int8 weights and per-token int8 activations, VNNI), "w4a16" (4-bit weights,
    float activations) or "w4a4" (Atom: 4-bit weights and activations, 128 outlier channels in
    int8). method: "smoothquant" / "awq" / "atom" (calibrated, the default) or "rtn" (plain
    round-to-nearest). calibration: a `.npz` path, or a list of input tuples (numpy or torch);
    None draws `random_batches` random inputs, with a warning that real data is better.
    alpha: SmoothQuant's migration strength. outliers: Atom's int8 channels. fuse: fuse each
    activation's producer (norm, SiLU gating) into its dynamic quantization (`fuse-quantize`).
    """

    scheme: str = "w8a8"
    group_size: int = 128
    method: str | None = None
    calibration: Any = None
    alpha: float = 0.5
    outliers: int = 128
    random_batches: int = 4
    fuse: bool = True

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise UsageError(
                f"quantize: unknown scheme {self.scheme!r}; use one of {list(SCHEMES)}"
            )
        methods = SCHEMES[self.scheme][2]
        if self.method is not None and self.method not in methods:
            raise UsageError(
                f"quantize: scheme {self.scheme} has no method {self.method!r}; use one of {methods}"
            )
        if self.group_size <= 0 or self.group_size % 4:
            raise UsageError(
                f"quantize: group_size={self.group_size} must be a positive multiple of 4"
            )

    @property
    def resolved_method(self) -> str:
        return self.method or SCHEMES[self.scheme][1]

    @property
    def pass_options(self) -> dict[str, Any]:
        """Keyword options of this scheme's pass (besides `activations`)."""
        method = self.resolved_method
        if self.scheme == "w8a8":
            return {"alpha": self.alpha if method == "smoothquant" else 0.0}
        if self.scheme == "w4a16":
            return {"group_size": self.group_size, "method": method}
        return {"group_size": self.group_size, "method": method, "outliers": self.outliers}


def parse_quantize(text: str, calibration: str | None = None) -> QuantConfig:
    """`w8a8`, `w4a16:group=64`, `w4a4:method=rtn,outliers=64` => QuantConfig (the CLI form)."""
    scheme, _, rest = text.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        key = {"group": "group_size"}.get(key.strip(), key.strip())
        if key in ("group_size", "outliers", "random_batches"):
            options[key] = int(value)
        elif key == "alpha":
            options[key] = float(value)
        elif key == "method":
            options[key] = value.strip()
        else:
            raise UsageError(
                f"--quantize {text}: unknown option {key!r}; options: group, method, alpha, "
                f"outliers, random_batches"
            )
    return QuantConfig(scheme.strip(), calibration=calibration, **options)


def quantize_graph(g: Any, config: QuantConfig) -> Any:
    """Calibrate `g` (when the method needs it) and apply the scheme's pass."""
    from ember.passes import PASSES

    pass_name = SCHEMES[config.scheme][0]
    activations = None
    if config.resolved_method != "rtn":
        activations = calibrate(g, _calibration_batches(g, config))
    quantized = PASSES[pass_name](g, activations=activations, **config.pass_options)
    if config.fuse:
        quantized = PASSES["fuse-quantize"](quantized)
    log.info(
        "%s (%s): %d -> %d nodes",
        pass_name,
        config.resolved_method,
        len(g.nodes),
        len(quantized.nodes),
    )
    return quantized


def calibrate(g: Any, batches: Sequence[Sequence[np.ndarray]]) -> dict[Any, np.ndarray]:
    """For each matmul with a constant weight: the rows X[rows, K] its input took on `batches`,
    keyed by the matmul's weight Value (what the quantization passes look up)."""
    from ember.ir import Builder, interpret
    from ember.ir.ops import MatMul

    sites = [n for n in g.nodes if isinstance(n.op, MatMul) and n.inputs[1].type.rank == 2]
    if not sites:
        return {}
    b = Builder.like(g)
    for node in g.nodes:
        b.add_node(node)
    b.output(*(n.inputs[0] for n in sites))
    probe = b.build()
    rows: dict[Any, list[np.ndarray]] = {n.inputs[1]: [] for n in sites}
    for batch in batches:
        for node, x in zip(sites, interpret(probe, *batch), strict=True):
            rows[node.inputs[1]].append(np.asarray(x, np.float32).reshape(-1, x.shape[-1]))
    return {key: np.concatenate(parts)[:MAX_ROWS] for key, parts in rows.items()}


def _calibration_batches(g: Any, config: QuantConfig) -> list[list[np.ndarray]]:
    source = config.calibration
    if source is None:
        warnings.warn(
            f"quantize: no calibration data; using {config.random_batches} random batches. "
            f"Real inputs calibrate {config.resolved_method} much better (calibration=...)",
            stacklevel=3,
        )
        return [_random_inputs(g, seed) for seed in range(config.random_batches)]
    if isinstance(source, str | Path):
        return _load_npz(g, Path(source))
    return [
        [_numpy(a) for a in (batch if isinstance(batch, Sequence) else (batch,))]
        for batch in source
    ]


def _load_npz(g: Any, path: Path) -> list[list[np.ndarray]]:
    """A .npz holding the graph's inputs by name (or arr_0...), each with a leading batch axis
    of calibration samples, or one array per input as a single batch."""
    if not path.exists():
        raise UsageError(f"--calibration {path}: no such file")
    data = np.load(path)
    names = g.input_names
    keys = [n if n in data else f"arr_{i}" for i, n in enumerate(names)]
    missing = [k for k in keys if k not in data]
    if missing:
        raise EmberError(
            f"calibration file {path} lacks inputs {missing}; it holds {sorted(data)} "
            f"(save one array per model input, by name)"
        )
    arrays = [data[k] for k in keys]
    ranks = [v.type.rank for v in g.inputs]
    if all(a.ndim == r + 1 for a, r in zip(arrays, ranks, strict=True)):
        return [[a[i] for a in arrays] for i in range(arrays[0].shape[0])]
    return [arrays]


def _random_inputs(g: Any, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for v in g.inputs:
        shape = [d if isinstance(d, int) else _symbol_size(g, d) for d in v.type.shape]
        dtype = v.type.dtype.numpy
        if np.issubdtype(dtype, np.floating):
            out.append(rng.standard_normal(shape).astype(dtype))
        else:  # token ids and the like: small values are valid for any vocabulary
            out.append(rng.integers(0, 2, shape).astype(dtype))
    return out


def _symbol_size(g: Any, dim: Any) -> int:
    low, high = g.symbol_ranges.get(str(dim), (1, None))
    return max(low, min(high or 16, 16))


def _numpy(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
