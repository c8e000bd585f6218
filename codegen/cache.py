"""The on-disk compile cache: built executables, keyed by everything that decides their code.

The key is the sha256 of the optimized graph's JSON (weights included), the resolved target,
the pass list, and the versions of ember (plus a fingerprint of the ir/ and codegen/ sources,
so a development checkout never loads code built by an older tree), TVM and tvm-ffi.

An entry is a directory `<dir>/<key>/` holding `lib-<sha256 prefix>.so` and `entry.json` (the
library's name, sha256 and size, and what was built). The library is the exported artifact
(`codegen.export`, metadata inside): TVM cannot relink a module loaded from a `.so`, so exporting a
program that came from the cache copies its library instead (`copy_library`). It is written complete
in a temporary directory and renamed into place, so other processes see all of it or none of it;
when two processes race, the first rename wins and the other discards its copy. An entry whose
sidecar is unreadable, whose library fails the checksum or fails to load is logged, deleted and
rebuilt, never run. The library's name carries its checksum because the dynamic loader caches
libraries by path: a rebuilt entry must not resolve to the old one in a process that loaded it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ember.codegen.build import BuildResult, build
from ember.codegen.export import export_library, graph_metadata
from ember.codegen.target import resolve_target
from ember.errors import CodegenError
from ember.ir import Graph, to_json

__all__ = ["CachedBuild", "cache_key", "cached_build", "copy_library", "load_entry", "store_entry"]

log = logging.getLogger(__name__)

_FORMAT = "ember.cache/1"
_SIDECAR = "entry.json"
_SOURCE_DIRS = ("ir", "codegen")  # the code that decides what a graph compiles to


@dataclass(frozen=True)
class CachedBuild:
    """A build, fresh or loaded: `key` is None when the cache is off; `hit` says it was loaded
    (then `build.times` has no build steps, only `cache_load`) and `path` is the entry."""

    build: BuildResult
    key: str | None = None
    hit: bool = False
    path: Path | None = None


def cached_build(
    g: Graph,
    target: str | dict[str, Any],
    passes: Sequence[str],
    cache_dir: Path | None,
    *,
    destinations: bool = False,
) -> CachedBuild:
    """`build(g, target, destinations=...)` through the cache in `cache_dir` (None: no cache)."""
    if cache_dir is None:
        return CachedBuild(build(g, target, destinations=destinations))
    spec = resolve_target(target)
    key = cache_key(g, spec, passes, destinations=destinations)
    start = time.perf_counter()
    executable = load_entry(cache_dir, key)
    if executable is not None:
        path = cache_dir / key
        log.info("ember: cache hit %s (%s)", key, path)
        times = {"cache_load": time.perf_counter() - start}
        result = BuildResult(executable, spec, times, destinations)
        return CachedBuild(result, key, hit=True, path=path)
    result = build(g, spec, destinations=destinations)
    path = store_entry(cache_dir, key, result, g)
    return CachedBuild(result, key, hit=False, path=path)


def cache_key(
    g: Graph, target: dict[str, Any], passes: Sequence[str], *, destinations: bool = False
) -> str:
    """sha256 (hex) of the graph, resolved target, passes, build options and compiler versions."""
    digest = hashlib.sha256()
    header = {"format": _FORMAT, "target": target, "passes": list(passes), **_versions()}
    if destinations:  # absent otherwise: the keys of every other build stay as they were
        header["destinations"] = True
    digest.update(json.dumps(header, sort_keys=True).encode())
    digest.update(b"\0")
    digest.update(to_json(g).encode())
    return digest.hexdigest()


@cache
def _versions() -> dict[str, str]:
    import tvm

    sources = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for path in sorted(p for d in _SOURCE_DIRS for p in (root / d).rglob("*.py")):
        sources.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return {
        "ember": _distribution_version("ember"),
        "ember_sources": sources.hexdigest(),
        "tvm": tvm.__version__,
        "tvm_ffi": _distribution_version("apache-tvm-ffi"),
    }


def _distribution_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def load_entry(cache_dir: Path, key: str) -> Any | None:
    """The executable stored under `key`, or None (a missing or broken entry; broken ones are
    deleted)."""
    entry = cache_dir / key
    if not entry.is_dir():
        return None
    try:
        meta = json.loads((entry / _SIDECAR).read_text())
        if meta.get("format") != _FORMAT or meta.get("key") != key:
            raise ValueError(f"sidecar is for {meta.get('key')!r} in format {meta.get('format')!r}")
        library = entry / meta["library"]
        data = library.read_bytes()
        if len(data) != meta["size"] or hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise ValueError(f"{library.name} fails its checksum ({len(data)} bytes)")
        return _load_library(library)
    except Exception as err:  # any damage (OSError, bad JSON, dlopen or TVM errors) means rebuild
        log.warning("ember: cache entry %s is broken (%s); deleting it and rebuilding", entry, err)
        _remove(entry)
        return None


def _load_library(library: Path) -> Any:
    import tvm
    from tvm import relax

    return relax.VMExecutable(tvm.runtime.load_module(str(library)))


def store_entry(cache_dir: Path, key: str, result: BuildResult, g: Graph) -> Path | None:
    """Write `result` under `key` atomically; returns the entry, or None when it could not be
    written (the cache is an optimization: a read-only or full disk only logs a warning)."""
    entry = cache_dir / key
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key[:16]}-", dir=cache_dir))
    except OSError as err:
        log.warning("ember: cannot write the compile cache in %s (%s)", cache_dir, err)
        return None
    try:
        metadata = graph_metadata(g, result.target, destinations=result.destinations)
        scratch = export_library(result.executable, metadata, staging / "lib.so")
        data = scratch.read_bytes()
        checksum = hashlib.sha256(data).hexdigest()
        library = f"lib-{checksum[:16]}.so"
        scratch.rename(staging / library)
        meta = {
            "format": _FORMAT,
            "key": key,
            "library": library,
            "sha256": checksum,
            "size": len(data),
            "graph": g.name,
            "target": result.target,
            "build_times": result.times,
            **_versions(),
        }
        (staging / _SIDECAR).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        os.rename(staging, entry)
    except Exception as err:  # OSError, or TVM failing to export: the build itself is fine
        _remove(staging)
        if entry.is_dir():  # another process stored the same key first: keep theirs
            return entry
        log.warning("ember: could not store cache entry %s (%s)", entry, err)
        return None
    log.info("ember: cached %s as %s", g.name, entry)
    return entry


def copy_library(entry: Path, path: str | os.PathLike[str]) -> Path:
    """Copy the entry's library (an exported artifact) to `path`, atomically; returns `path`."""
    try:
        meta = json.loads((entry / _SIDECAR).read_text())
        data = (entry / meta["library"]).read_bytes()
    except (OSError, ValueError, KeyError) as err:
        raise CodegenError(
            f"cache entry {entry} is gone or unreadable ({err}); compile again with cache=False"
        ) from err
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise CodegenError(f"cache entry {entry} changed on disk; compile again with cache=False")
    out = Path(path).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = out.with_name(f".{out.name}.{os.getpid()}.partial")  # same directory: atomic rename
    staged.write_bytes(data)
    os.replace(staged, out)
    return out


def _remove(entry: Path) -> None:
    """Delete an entry: renamed aside first, so no reader sees it half deleted."""
    aside = entry.with_name(f".trash-{entry.name}-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.rename(entry, aside)
    except OSError:
        return
    shutil.rmtree(aside, ignore_errors=True)
