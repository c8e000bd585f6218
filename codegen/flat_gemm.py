"""Kernels of `flat_matmul` (FlashDecoding++'s flat GEMM) and the heuristic dataflow's profile.

In decoding, a linear layer's M (batch x new tokens) is tiny while N and K are the model's
width. The weight comes packed in [N / panel, K, panel] column panels (`pack_panels`); every
kernel streams them once per row tile:

- "gemv": one row at a time (a matrix-vector product per row; the panel is re-read from cache
  for each row), parallel over panels, vectorized along N.
- "flat": tiles of min(M, 8) rows (M is padded to 8 at most, never to 64) held in registers as
  8 x panel / 16 AVX-512 vectors, parallel over panels, vectorized along N, K unrolled by KU.
  No software prefetch: the panel is one sequential stream the hardware prefetcher follows.
- "gemm": the default CPU matmul schedule (codegen/cpu_matmul.py), with its epilogue fusion.

`profile_dispatch(N, K)` times the three on this machine for M in PROFILE_ROWS and returns the
dispatch table `flat_matmul` carries: ((largest M, kernel), ...) with the inflection points.

For a symbolic M, `kernels` writes "gemv" and "flat" into one PrimFunc branching on M at run
time (`dispatch_condition`; the last M % 8 rows run as one tile of exactly that many rows, one
branch per count, as a static build's); codegen/flat_dispatch.py adds the "gemm" branch.
"""

# no `from __future__ import annotations`: TVMScript resolves buffer annotations then by
# searching the calling frames (see codegen/async_softmax.py)
import functools
import json
import time
from typing import Any

import numpy as np
from tvm import tirx
from tvm.script import tirx as T

from ember.ir.ops import dispatch_kernel

__all__ = [
    "KU",
    "MR",
    "PANEL",
    "PROFILE_ROWS",
    "dispatch_condition",
    "kernels",
    "profile_dispatch",
    "tables_from_times",
]

PANEL = 32  # the packed weight's panel width: the CPU matmul's register tile (AVX-512)
MR = 8  # rows of the flat kernel's register tile (the symbolic kernel's tails count to 7)
KU = 4  # K unrolling
PROFILE_ROWS = (1, 4, 16, 64)
_SCHEDULED = {"tirx.is_scheduled": True, "tirx.noalias": True}


def kernels(
    dispatch: tuple[tuple[int, str], ...],
    m: int | None,
    k: int,
    panels: int,
    panel: int,
    columns: int,
    target: str,
) -> tuple[Any]:
    """The PrimFunc y[m, columns] = x[m, k] @ unpack(w[panels, k, panel]) for `target` kind
    "llvm" or "cuda" (one thread block per panel, one thread per column) running the "gemv" or
    "flat" kernel `dispatch` names for M rows. A static `m` gets that one kernel; `m` None (a
    symbolic M) gets both behind the run-time condition `m in` the table's gemv intervals (its
    "gemm" intervals are the caller's: codegen/flat_dispatch.py)."""
    if m is None:
        rows = tirx.Var("m", "int64")
        gemv = dispatch_condition(dispatch, rows, {"gemv"})
    else:
        rows, gemv = m, dispatch_kernel(dispatch, m) == "gemv"
    return (_kernel(rows, k, panels, panel, columns, gemv, target == "cuda"),)


def dispatch_condition(dispatch: tuple[tuple[int, str], ...], m: Any, names: set[str]) -> Any:
    """The TIR condition on the rows `m` under which `dispatch` picks a kernel in `names`: True
    or False when it always or never does, else an `or` of intervals `lo < m and m <= hi`."""
    intervals: list[tuple[int | None, int | None, str]] = []  # (lo, hi, kernel), runs merged
    for i, (bound, kernel) in enumerate(dispatch):
        hi = bound if i < len(dispatch) - 1 else None  # the last entry takes every larger M
        if intervals and intervals[-1][2] == kernel:
            intervals[-1] = (intervals[-1][0], hi, kernel)
        else:
            intervals.append((intervals[-1][1] if intervals else None, hi, kernel))
    chosen = [(lo, hi) for lo, hi, kernel in intervals if kernel in names]
    if len(chosen) in (0, len(intervals)):
        return bool(chosen)
    terms = []
    for lo, hi in chosen:
        parts = [m > lo] if lo is not None else []
        parts += [m <= hi] if hi is not None else []
        terms.append(functools.reduce(tirx.And, parts))
    return functools.reduce(tirx.Or, terms)


def _kernel(m: Any, k: int, panels: int, panel: int, columns: int, gemv: Any, cuda: bool) -> Any:  # noqa: C901
    """`gemv`: True, False or a condition on a symbolic `m` (the rows) choosing tiles of one
    row over tiles of up to MR rows."""
    ku = KU if k % KU == 0 else 1
    lanes = 1 if cuda else panel  # CUDA: the panel's columns are the block's threads
    symbolic = not isinstance(m, int)
    flat_rows = MR if symbolic else min(m, MR)

    @T.macro
    def tile(x, w, y, acc, p, j0, first, count):
        for i in T.unroll(count):
            for j in T.vectorized(lanes):
                acc[i, j] = T.float32(0)
        for ko in range(k // ku):
            for kk in T.unroll(ku):
                for i in T.unroll(count):
                    for j in T.vectorized(lanes):
                        acc[i, j] = (
                            acc[i, j] + x[first + i, ko * ku + kk] * w[p, ko * ku + kk, j0 + j]
                        )
        for i in T.unroll(count):
            for j in T.vectorized(lanes):
                if p * panel + j0 + j < columns:
                    y[first + i, p * panel + j0 + j] = acc[i, j]

    @T.macro
    def tail(x, w, y, acc, p, j0, count):
        if m % MR == count:
            tile(x, w, y, acc, p, j0, m - count, count)

    @T.macro
    def panel_rows(x, w, y, p, j0, rows):
        acc = T.decl_buffer((rows, lanes), "float32", scope="local")
        for t in range(m // rows):
            tile(x, w, y, acc, p, j0, t * rows, rows)
        if symbolic and rows == MR:  # the last m % 8 rows: one tile of exactly that many
            tail(x, w, y, acc, p, j0, 1)
            tail(x, w, y, acc, p, j0, 2)
            tail(x, w, y, acc, p, j0, 3)
            tail(x, w, y, acc, p, j0, 4)
            tail(x, w, y, acc, p, j0, 5)
            tail(x, w, y, acc, p, j0, 6)
            tail(x, w, y, acc, p, j0, 7)
        elif not symbolic and m % rows > 0:
            tile(x, w, y, acc, p, j0, m // rows * rows, m % rows)

    @T.macro
    def panel_kernel(x, w, y, p, j0):
        if gemv:
            panel_rows(x, w, y, p, j0, 1)
        else:
            panel_rows(x, w, y, p, j0, flat_rows)

    @T.prim_func
    def flat_gemm(
        x: T.Buffer((m, k), "float32"),
        w: T.Buffer((panels, k, panel), "float32"),
        y: T.Buffer((m, columns), "float32"),
    ):
        T.func_attr(_SCHEDULED)
        if cuda:
            for p in T.thread_binding(panels, "blockIdx.x"):
                for j0 in T.thread_binding(panel, "threadIdx.x"):
                    panel_kernel(x, w, y, p, j0)
        else:
            for p in T.parallel(panels):
                panel_kernel(x, w, y, p, 0)

    return flat_gemm


def tables_from_times(times: dict[int, dict[str, float]]) -> tuple[tuple[int, str], ...]:
    """The dispatch table from {M: {kernel: seconds}}: the fastest kernel per profiled M, runs
    of the same winner merged; an entry's bound is the last M it won."""
    table: list[tuple[int, str]] = []
    for m in sorted(times):
        best = min(times[m], key=times[m].__getitem__)
        if table and table[-1][1] == best:
            table[-1] = (m, best)
        else:
            table.append((m, best))
    return tuple(table)


@functools.cache
def _profile(
    n: int, k: int, target: str, rows: tuple[int, ...], symbolic: bool
) -> tuple[tuple[int, str], ...]:
    import sympy

    from ember.codegen.build import build
    from ember.ir import Builder
    from ember.ir.ops import FLAT_KERNELS, FlatMatMul, pack_panels
    from ember.runtime import Executor

    rng = np.random.default_rng(0)
    packed = pack_panels(rng.standard_normal((k, n)).astype(np.float32), PANEL)
    spec = json.loads(target) if target.startswith("{") else target

    @functools.cache
    def executor(kernel: str, m: Any) -> Executor:
        b = Builder(f"profile_{kernel}")
        xv = b.input((m, k), "float32", "x")
        b.output(b.emit(FlatMatMul(columns=n, dispatch=((0, kernel),)), xv, b.const(packed)))
        result = build(b.build(), spec)
        return Executor(result.executable, target=result.target)

    times: dict[int, dict[str, float]] = {}
    for m in rows:
        x = rng.standard_normal((m, k)).astype(np.float32)
        times[m] = {}
        for kernel in FLAT_KERNELS:
            run = executor(kernel, sympy.Symbol("m") if symbolic else m).run
            times[m][kernel] = _seconds(lambda run=run, x=x: run([x]))
    return tables_from_times(times)


def _seconds(call: Any, repeat: int = 15) -> float:
    """Median seconds of `call` after a warm-up."""
    call()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples))


def profile_dispatch(
    n: int,
    k: int,
    *,
    target: Any = "llvm",
    rows: tuple[int, ...] = PROFILE_ROWS,
    symbolic: bool = False,
) -> tuple[tuple[int, str], ...]:
    """The dispatch table of a linear layer with weight [K, N] on this machine (module doc);
    cached per (N, K, target, rows, symbolic) for the process. `symbolic` times the kernels a
    symbolic-M program chooses among at run time (one build each, run at every M): they differ
    from the per-M builds (the default GEMM schedule is slower for a symbolic M)."""
    key = target if isinstance(target, str) else json.dumps(target, sort_keys=True)
    return _profile(n, k, key, tuple(rows), symbolic)
