"""Targets: the host CPU detected for LLVM (mcpu, cores), and user-given target specs."""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

from ember.errors import CodegenError

__all__ = ["host_cpu", "resolve_target"]

# LLVM CPU names by the most specific feature flag /proc/cpuinfo shows (checked in order)
_MCPU_BY_FLAG = (
    ("amx_tile", "sapphirerapids"),
    ("avx512_bf16", "cooperlake"),
    ("avx512_vnni", "cascadelake"),
    ("avx512f", "skylake-avx512"),
    ("avx2", "haswell"),
)


@cache
def host_cpu() -> dict[str, Any]:
    """An LLVM target for this machine; LLVM's own detection misnames it (see TVM_NOTES)."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    mcpu = next((cpu for flag, cpu in _MCPU_BY_FLAG if flag in flags), "x86-64")
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    return {"kind": "llvm", "mcpu": mcpu, "num-cores": cores}


def resolve_target(target: str | dict[str, Any]) -> dict[str, Any]:
    """A TVM target dict from "llvm", "cuda", "rocm", a JSON string or a dict."""
    if isinstance(target, dict):
        spec = dict(target)
    elif target.strip().startswith("{"):
        try:
            spec = json.loads(target)
        except json.JSONDecodeError as err:
            raise CodegenError(f"target {target!r} is not valid JSON: {err}") from err
    else:
        spec = {"kind": target.strip()}
    if spec.get("kind") == "llvm":
        spec = {**host_cpu(), **spec}
    elif spec.get("kind") not in ("cuda", "rocm", "opencl"):
        raise CodegenError(
            f"unknown target {target!r}; use 'llvm' (this CPU), 'cuda', 'rocm' or a TVM target JSON dict"
        )
    return spec
