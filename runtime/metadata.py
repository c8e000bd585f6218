"""The metadata an exported model carries: format version, signature, target and versions.

Export embeds it as a NUL-terminated JSON string in the `.so` under the C symbol `SYMBOL`; the
Python loader and the C++ `ember_run` read it with dlsym. Bump `FORMAT_VERSION` whenever the
JSON layout or the calling convention of `main` changes.
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass
from typing import Any

from ember.errors import ArtifactError

__all__ = ["FORMAT", "FORMAT_VERSION", "SYMBOL", "Metadata", "TensorSpec", "package_versions"]

FORMAT = "ember-artifact"
FORMAT_VERSION = 1
SYMBOL = "ember_artifact_metadata"


def package_versions() -> dict[str, str]:
    """The installed ember, TVM and tvm-ffi versions (read without importing them)."""
    found = {}
    for key, dist in (("ember", "ember"), ("tvm", "apache-tvm"), ("tvm_ffi", "apache-tvm-ffi")):
        try:
            found[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[key] = "unknown"
    return found


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: its name, dtype and shape (ints, and symbol names for dynamic dims)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype}[{','.join(str(d) for d in self.shape)}]"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TensorSpec:
        return cls(str(doc["name"]), str(doc["dtype"]), tuple(doc["shape"]))


@dataclass(frozen=True)
class Metadata:
    """Everything `ember inspect` and the loaders need to know about an exported model."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    symbol_ranges: dict[str, tuple[int, int | None]]
    target: dict[str, Any]
    versions: dict[str, str]
    graph_name: str = "main"
    param_bytes: int = 0
    op_histogram: dict[str, int] | None = None
    ir: str = ""  # the optimized graph as text, for `ember inspect --ir`
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        doc = {
            "format": FORMAT,
            "format_version": self.format_version,
            "versions": self.versions,
            "target": self.target,
            "graph_name": self.graph_name,
            "inputs": [s.to_json() for s in self.inputs],
            "outputs": [s.to_json() for s in self.outputs],
            "symbol_ranges": {k: list(r) for k, r in self.symbol_ranges.items()},
            "param_bytes": self.param_bytes,
            "op_histogram": self.op_histogram or {},
            "ir": self.ir,
        }
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, path: str) -> Metadata:
        """Parse and check metadata read from `path`; raises ArtifactError when incompatible."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise ArtifactError(f"{path}: its ember metadata is not valid JSON ({err})") from err
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ArtifactError(f"{path}: not an ember model (metadata format {doc!r:.60})")
        versions = dict(doc.get("versions", {}))
        if doc.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(
                f"{path}: artifact format {doc.get('format_version')} (written by ember "
                f"{versions.get('ember', '?')}), but ember {package_versions()['ember']} "
                f"reads format {FORMAT_VERSION}; re-export the model with this ember version"
            )
        _check_abi(versions, path)
        return cls(
            inputs=tuple(TensorSpec.from_json(s) for s in doc["inputs"]),
            outputs=tuple(TensorSpec.from_json(s) for s in doc["outputs"]),
            symbol_ranges={k: (int(r[0]), r[1]) for k, r in doc["symbol_ranges"].items()},
            target=dict(doc["target"]),
            versions=versions,
            graph_name=str(doc.get("graph_name", "main")),
            param_bytes=int(doc.get("param_bytes", 0)),
            op_histogram=dict(doc.get("op_histogram", {})),
            ir=str(doc.get("ir", "")),
        )


def _check_abi(versions: dict[str, str], path: str) -> None:
    """The library calls tvm-ffi's C ABI, stable within a minor release (0.1.x)."""
    built, here = versions.get("tvm_ffi", "unknown"), package_versions()["tvm_ffi"]
    if "unknown" not in (built, here) and built.split(".")[:2] != here.split(".")[:2]:
        raise ArtifactError(
            f"{path}: built against apache-tvm-ffi {built}, but {here} is installed; install "
            f"apache-tvm-ffi=={built} or re-export the model"
        )
