"""Check GPU schedules on a CPU: run a graph's OpenCL kernels on PoCL and compare with llvm.

No GPU is needed and TVM's OpenCL runtime is not either (the wheel lacks it). Each fused function
gets the GPU schedules `build` gives it, is built for OpenCL, and its kernels run through pyopencl
on PoCL in launch order with the grid and block sizes that the host code passes them; the same
function unscheduled, built for llvm, on the same random inputs, is the reference. This checks
correctness only: PoCL timings say nothing about a GPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ember.codegen.build import fuse
from ember.codegen.gpu_schedule import schedule_gpu
from ember.codegen.lower import to_relax
from ember.codegen.schedule import default_schedule_rules
from ember.codegen.target import host_cpu
from ember.errors import CodegenError
from ember.ir import Graph

__all__ = ["KernelCheck", "check_on_pocl"]

log = logging.getLogger(__name__)

_OPENCL = {"kind": "opencl"}
_AXES = {"x": 0, "y": 1, "z": 2}


@dataclass(frozen=True)
class KernelCheck:
    """One fused function: how many OpenCL kernels it launched and how far they were off."""

    function: str
    kernels: int
    max_error: float  # max |opencl - llvm| / max(1, max |llvm|) over every buffer argument


def check_on_pocl(g: Graph, *, seed: int = 0) -> list[KernelCheck]:
    """Run every fused function of `g` (static shapes only) on PoCL and on llvm; compare."""
    import tvm
    from tvm import tirx

    target = tvm.target.Target(_OPENCL)
    with target:
        scheduled = schedule_gpu(fuse(to_relax(g)), default_schedule_rules(_OPENCL), target)
    # the reference is lowered for the CPU: ops with a GPU-only compute (top-k) differ there
    with tvm.target.Target(host_cpu()):
        reference = fuse(to_relax(g))
    queue = _pocl_queue()
    rng = np.random.default_rng(seed)
    checks = []
    for gvar, func in scheduled.functions_items():
        if isinstance(func, tirx.PrimFunc):
            arrays = _random_arguments(gvar.name_hint, func, rng)
            want = _run_llvm(_function(reference, gvar.name_hint), arrays)
            got, launched = _run_opencl(func, arrays, queue)
            error = _max_error(got, want)
            log.info("%s: %d kernels, max error %.3g", gvar.name_hint, launched, error)
            checks.append(KernelCheck(gvar.name_hint, launched, error))
    return checks


def _function(mod: Any, name: str) -> Any:
    matches = [f for gv, f in mod.functions_items() if gv.name_hint == name]
    if not matches:
        raise CodegenError(f"{name}: the CPU lowering of the graph fused differently; no reference")
    return matches[0]


def _pocl_queue() -> Any:
    try:
        import pyopencl as cl
    except ImportError as err:
        raise CodegenError(
            "running OpenCL kernels on the CPU needs pyopencl (pip install pyopencl)"
        ) from err
    platforms = [p for p in cl.get_platforms() if "Portable Computing Language" in p.name]
    if not platforms:
        raise CodegenError("no PoCL OpenCL platform: install Debian's pocl-opencl-icd")
    return cl.CommandQueue(cl.Context(platforms[0].get_devices()))


def _random_arguments(name: str, func: Any, rng: np.random.Generator) -> list[np.ndarray]:
    """Normal floats; integers and bools are zero, so that gather indices stay in bounds."""
    arrays = []
    for param in func.params:
        shape = [int(d) if isinstance(d, int) or hasattr(d, "value") else None for d in param.shape]
        if None in shape:
            raise CodegenError(
                f"{name}: checking on PoCL needs static shapes, got {list(param.shape)}"
            )
        dtype = np.dtype(str(param.dtype))
        if dtype.kind == "f":
            arrays.append(rng.standard_normal(shape).astype(dtype))
        else:
            arrays.append(np.zeros(shape, dtype))
    return arrays


def _run_llvm(func: Any, arrays: list[np.ndarray]) -> list[np.ndarray]:
    import tvm

    lib = tvm.tirx.build(func.with_attr("global_symbol", "main"), target=host_cpu())
    tensors = [tvm.runtime.tensor(a.copy()) for a in arrays]
    lib["main"](*tensors)
    return [t.numpy() for t in tensors]


def _run_opencl(func: Any, arrays: list[np.ndarray], queue: Any) -> tuple[list[np.ndarray], int]:
    """Build `func` for OpenCL and replay its host code: allocations and kernel launches."""
    import pyopencl as cl
    import tvm

    split: dict[str, Any] = {}

    @tvm.instrument.pass_instrument
    class _KeepSplit:
        def run_after_pass(self, mod: Any, info: Any) -> None:
            if info.name.endswith("SplitHostDevice"):
                split["mod"] = mod

    target = tvm.target.Target(_OPENCL, host=host_cpu())
    with tvm.transform.PassContext(instruments=[_KeepSplit()]):
        built = tvm.tirx.build(func.with_attr("global_symbol", "main"), target=target)
    source = next(m for m in built.imports if m.kind == "opencl").inspect_source("cl")
    program = cl.Program(queue.context, source).build()
    host = split["mod"]["main"]
    buffers = _Buffers(queue, host.params, arrays)
    launched = 0
    for stmt in _statements(host.body):
        launched += buffers.execute(stmt, program)
    queue.finish()
    return [buffers.read(p, a) for p, a in zip(host.params, arrays, strict=True)], launched


def _statements(stmt: Any) -> list[Any]:
    """The host body in order; attributes (hints such as "hand_threaded") are looked through."""
    kind = type(stmt).__name__
    if kind == "SeqStmt":
        return [s for child in stmt.seq for s in _statements(child)]
    if kind == "AttrStmt":
        return _statements(stmt.body)
    return [stmt]


class _Buffers:
    """Device memory for the host function's buffers, keyed by the buffer variable."""

    def __init__(self, queue: Any, params: Any, arrays: list[np.ndarray]) -> None:
        import pyopencl as cl

        self.queue = queue
        # symbolic element offsets of parameters (topi's GPU sort leaves them free): ours are 0
        self.offsets = {str(p.elem_offset) for p in params if not hasattr(p.elem_offset, "value")}
        self.claimed: set[int] = set()
        self.memory: list[tuple[Any, Any]] = []  # (buffer var, cl.Buffer): TVM vars are unhashable
        flags = cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR
        for param, array in zip(params, arrays, strict=True):
            host = array if array.size else np.zeros(1, array.dtype)
            self.memory.append((param, cl.Buffer(queue.context, flags, hostbuf=host)))

    def lookup(self, var: Any) -> Any:
        for known, memory in self.memory:
            if known.same_as(var):
                return memory
        # TVM's FlattenBuffer views a buffer through a copy of its variable (same name, dtype and
        # size), not the variable itself; buffers alike in all three (FuseTIR can name two
        # parameters `lv`) are viewed in declaration order, so each such view takes the next one
        alike = [i for i, (known, _) in enumerate(self.memory) if _same_signature(known, var)]
        unclaimed = [i for i in alike if i not in self.claimed] or alike
        if not unclaimed:
            raise CodegenError(f"kernel argument {var} is no buffer the host function declared")
        self.claimed.add(unclaimed[0])
        return self.memory[unclaimed[0]][1]

    def execute(self, stmt: Any, program: Any) -> int:
        """Apply one host statement; returns how many kernels it launched."""
        import pyopencl as cl

        kind = type(stmt).__name__
        if kind == "AllocBuffer":
            nbytes = max(1, _elements(stmt.buffer) * np.dtype(str(stmt.buffer.dtype)).itemsize)
            self.memory.append(
                (stmt.buffer, cl.Buffer(self.queue.context, cl.mem_flags.READ_WRITE, nbytes))
            )
            return 0
        if kind == "DeclBuffer":  # a view (flattened shape) of a buffer declared before
            self.memory.append((stmt.buffer, self.lookup(stmt.buffer.data.args[0])))
            return 0
        if kind == "Evaluate" and _calls(stmt.value, "tirx.call_ffi_kernel"):
            self._launch(stmt.value, program)
            return 1
        raise CodegenError(f"cannot replay host statement {kind} on PoCL:\n{stmt}")

    def _launch(self, call: Any, program: Any) -> None:
        import pyopencl as cl

        tags = list(call.attrs.launch_params)
        args, extents = (
            call.args[1 : len(call.args) - len(tags)],
            call.args[len(call.args) - len(tags) :],
        )
        grid, block = [1, 1, 1], [1, 1, 1]
        for tag, extent in zip(tags, extents, strict=True):
            scope, _, axis = tag.partition(".")
            if scope not in ("blockIdx", "threadIdx") or not hasattr(extent, "value"):
                raise CodegenError(
                    f"cannot launch with {tag}={extent} on PoCL (static thread extents only)"
                )
            (grid if scope == "blockIdx" else block)[_AXES[axis]] = int(extent.value)
        kernel = cl.Kernel(program, call.args[0].value)
        kernel.set_args(*(self._argument(a) for a in args))
        global_size = tuple(g * b for g, b in zip(grid, block, strict=True))
        cl.enqueue_nd_range_kernel(self.queue, kernel, global_size, tuple(block))

    def _argument(self, arg: Any) -> Any:
        if _calls(arg, "tirx.buffer_data"):
            return self.lookup(arg.args[0])
        if hasattr(arg, "value"):
            return np.dtype(str(arg.dtype)).type(arg.value)
        if str(arg) in self.offsets:
            return np.dtype(str(arg.ty.dtype)).type(0)
        raise CodegenError(f"kernel argument {arg} is not static")

    def read(self, param: Any, like: np.ndarray) -> np.ndarray:
        import pyopencl as cl

        out = np.empty_like(like)
        if out.size:
            cl.enqueue_copy(self.queue, out, self.lookup(param))
        return out


def _calls(expr: Any, op_name: str) -> bool:
    op = getattr(expr, "op", None)
    return op is not None and getattr(op, "name", None) == op_name


def _same_signature(a: Any, b: Any) -> bool:
    """Same name, dtype and element count (a view may be flattened)."""
    return a.name == b.name and str(a.dtype) == str(b.dtype) and _elements(a) == _elements(b)


def _elements(buffer: Any) -> int:
    return int(np.prod([int(d) for d in buffer.shape]))


def _max_error(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    worst = 0.0
    for a, b in zip(got, want, strict=True):
        if not b.size:
            continue
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        same = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
        diff = np.where(same, 0.0, np.abs(a64 - b64))
        scale = max(1.0, float(np.nanmax(np.abs(b64))) if np.isfinite(b64).any() else 1.0)
        worst = max(worst, float(np.nan_to_num(diff, nan=np.inf).max()) / scale)
    return worst
