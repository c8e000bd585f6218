"""A fixed-length numeric description of a target, appended to every schedule's features.

The cost model sees the hardware it predicts for (CDMPP's device-invariant idea, TECHNIQUES.md §5):
cores, SIMD width, ISA extensions and cache sizes for CPUs; SMs/CUs, warp size, thread and shared
memory limits and L2 for GPUs. Values come from the target spec and a table of published figures
per LLVM `mcpu` / CUDA `arch` / ROCm `mcpu` (per core for CPU caches); unknown names fall back to a
generic entry of their kind. Sizes enter as log2 so that one split generalizes across scales.

Deterministic by design: the same spec gives the same vector on every machine (the host's own
`/proc` and `/sys` are never read here; `codegen.target.resolve_target` already put the host's
`mcpu` and core count into the spec).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

__all__ = ["FEATURE_NAMES", "target_features"]


class _Cpu(NamedTuple):
    vector_bits: int
    isa: frozenset[str]  # subset of _ISA
    l1d_kb: int  # per core
    l2_kb: int  # per core
    l3_kb: int  # per core share


class _Gpu(NamedTuple):
    units: int  # SMs (CUDA) or CUs (ROCm)
    shared_kb: int  # shared memory / LDS per block, usable maximum
    l2_kb: int
    registers_k: int  # 32-bit registers per SM/CU, thousands


_ISA = ("fma", "avx512", "vnni", "bf16", "amx", "neon", "sve")

_X86_512 = frozenset({"fma", "avx512"})
_CPUS: dict[str, _Cpu] = {
    "x86-64": _Cpu(128, frozenset(), 32, 256, 2048),
    "haswell": _Cpu(256, frozenset({"fma"}), 32, 256, 2560),
    "skylake": _Cpu(256, frozenset({"fma"}), 32, 256, 2048),
    "znver3": _Cpu(256, frozenset({"fma"}), 32, 512, 4096),
    "skylake-avx512": _Cpu(512, _X86_512, 32, 1024, 1408),
    "cascadelake": _Cpu(512, _X86_512 | {"vnni"}, 32, 1024, 1408),
    "cooperlake": _Cpu(512, _X86_512 | {"vnni", "bf16"}, 32, 1024, 1408),
    "icelake-server": _Cpu(512, _X86_512 | {"vnni"}, 48, 1280, 1536),
    "sapphirerapids": _Cpu(512, _X86_512 | {"vnni", "bf16", "amx"}, 48, 2048, 1920),
    "znver4": _Cpu(512, _X86_512 | {"vnni", "bf16"}, 32, 1024, 4096),
    "generic-arm": _Cpu(128, frozenset({"fma", "neon"}), 64, 1024, 1024),
    "neoverse-n1": _Cpu(128, frozenset({"fma", "neon"}), 64, 1024, 1024),
    "neoverse-v1": _Cpu(256, frozenset({"fma", "neon", "sve"}), 64, 1024, 512),
    "neoverse-v2": _Cpu(128, frozenset({"fma", "neon", "sve", "bf16"}), 64, 2048, 1024),
    "apple-m1": _Cpu(128, frozenset({"fma", "neon"}), 128, 3072, 2048),
}

_GPUS: dict[str, _Gpu] = {
    "sm_70": _Gpu(80, 96, 6144, 64),  # V100
    "sm_75": _Gpu(40, 64, 4096, 64),  # T4
    "sm_80": _Gpu(108, 163, 40960, 64),  # A100
    "sm_86": _Gpu(84, 99, 6144, 64),  # A10 / RTX 30xx
    "sm_89": _Gpu(58, 99, 49152, 64),  # L4 / RTX 40xx
    "sm_90": _Gpu(132, 227, 51200, 64),  # H100
    "cuda": _Gpu(80, 48, 6144, 64),
    "gfx90a": _Gpu(110, 64, 8192, 128),  # MI200 (one die)
    "gfx942": _Gpu(304, 64, 4096, 128),  # MI300X
    "rocm": _Gpu(60, 64, 4096, 128),
    "opencl": _Gpu(16, 32, 2048, 64),
}

FEATURE_NAMES: tuple[str, ...] = (
    "is_gpu",
    "log2_cores",
    "log2_vector_bits",
    *(f"has_{name}" for name in _ISA),
    "log2_l1d_kb",
    "log2_l2_kb",
    "log2_l3_kb",
    "log2_gpu_units",
    "log2_warp_size",
    "log2_max_threads_per_block",
    "log2_shared_kb",
    "log2_gpu_l2_kb",
    "log2_registers_k",
)


def target_features(target: dict[str, Any]) -> np.ndarray:
    """The target's feature vector (float32, `len(FEATURE_NAMES)`), from a resolved target spec."""
    values = dict.fromkeys(FEATURE_NAMES, 0.0)
    if target["kind"] == "llvm":
        values |= _cpu_values(target)
    else:
        values |= _gpu_values(target)
    return np.array([values[name] for name in FEATURE_NAMES], dtype=np.float32)


def _cpu_values(target: dict[str, Any]) -> dict[str, float]:
    mcpu = str(target.get("mcpu", ""))
    arm = "aarch64" in str(target.get("mtriple", "")) or mcpu.startswith(("neoverse", "apple"))
    cpu = _CPUS.get(mcpu) or _CPUS["generic-arm" if arm else "x86-64"]
    return {
        "log2_cores": math.log2(max(int(target.get("num-cores", 1)), 1)),
        "log2_vector_bits": math.log2(cpu.vector_bits),
        **{f"has_{name}": float(name in cpu.isa) for name in _ISA},
        "log2_l1d_kb": math.log2(cpu.l1d_kb),
        "log2_l2_kb": math.log2(cpu.l2_kb),
        "log2_l3_kb": math.log2(cpu.l3_kb),
    }


def _gpu_values(target: dict[str, Any]) -> dict[str, float]:
    kind = target["kind"]
    name = str(target.get("arch") or target.get("mcpu") or kind)
    gpu = _GPUS.get(name) or _GPUS[kind]
    warp = int(target.get("thread_warp_size", 64 if kind == "rocm" else 32))
    threads = int(target.get("max_num_threads", 256 if kind == "rocm" else 1024))
    shared_kb = int(target.get("max_shared_memory_per_block", gpu.shared_kb * 1024)) // 1024
    return {
        "is_gpu": 1.0,
        "log2_gpu_units": math.log2(gpu.units),
        "log2_warp_size": math.log2(warp),
        "log2_max_threads_per_block": math.log2(threads),
        "log2_shared_kb": math.log2(max(shared_kb, 1)),
        "log2_gpu_l2_kb": math.log2(gpu.l2_kb),
        "log2_registers_k": math.log2(gpu.registers_k),
    }
