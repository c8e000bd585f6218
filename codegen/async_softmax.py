"""Kernels of `async_attention` (FlashDecoding++'s asynchronous softmax with a unified max).

    out[b, h, n] = sum_t e^(x_t - phi) v_t / sum_t e^(x_t - phi),
    x_t = scale * q[b, h, n] . k[b, h / groups, t] + bias[b, h?, n, t]

The key/value sequence is the concatenation of one or two parts (the cache and the step's new
tokens: the concatenation is never materialized) cut into chunks of `chunk` tokens. Two kernels:

- `partial`: one task per (batch, head, chunk), all in parallel (CPU threads, GPU thread blocks
  x threads). Each computes, for its chunk, sum e^(x - phi), sum e^(x - phi) v and max x, with no
  synchronization on a running max: phi is a per-layer constant.
- `combine`: per row (b, h, n), adds the chunks up and divides. A row whose max x - phi leaves
  [LOW, HIGH] (e^(x - phi) could overflow, or every term underflow) is recomputed with the
  standard softmax: e^(x - row max) (the exact row max, from the chunks' maxima), summed and
  weighted in one more pass over the row's keys and values, so results are always right.

Both kernels are written in TIR directly (the fallback is a data-dependent branch, which TE
cannot express) and marked scheduled; `kernels(target)` picks the CPU or the CUDA version.
"""

# no `from __future__ import annotations`: TVMScript then resolves the buffer annotations of the
# kernels below by searching the calling frames, which fails when a caller has a local `q`
from dataclasses import dataclass, replace
from typing import Any

from tvm import tirx
from tvm.script import tirx as T

__all__ = ["HIGH", "LOW", "AttentionShape", "kernels"]

# x - phi must stay within [LOW, HIGH]: e^60 times 2^20 tokens stays below float32's max (e^88),
# and a row max at -60 keeps its largest term e^-60 a normal float, so no precision is lost
HIGH = 60.0
LOW = -60.0

_SCHEDULED = {"tirx.is_scheduled": True, "tirx.noalias": True}
THREADS = 64  # GPU threads per block


@dataclass(frozen=True)
class AttentionShape:
    """Sizes of one attention: q [batch, heads, new, dim], keys/values in parts
    [batch, kv_heads, lengths[p], dim], bias [batch, bias_heads (1 or heads), new, total]; all
    static but the batch, which may be a TIR variable (one kernel for every batch)."""

    batch: Any
    heads: int
    kv_heads: int
    new: int
    dim: int
    lengths: tuple[int, ...]  # one or two parts
    bias_heads: int
    chunk: int

    @property
    def chunks(self) -> tuple[int, int]:
        """Chunks of each part (the second is 0 with one part)."""
        first = -(-self.lengths[0] // self.chunk)
        second = -(-self.lengths[1] // self.chunk) if len(self.lengths) > 1 else 0
        return first, second

    @property
    def total(self) -> int:
        return sum(self.lengths)


def kernels(sizes: dict[str, Any], scale: float, phi: float, target: str) -> tuple[Any, Any]:
    """(partial, combine) PrimFuncs for `AttentionShape(**sizes)` and `target` kind "llvm"
    (threads) or "cuda" (one GPU thread per task, THREADS per block); batch None: symbolic.

    partial(q, bias, k0, v0, k1, v1) -> (sums [B, H, N, C], maxes [B, H, N, C],
    outs [B, H, N, C, D]); combine(q, bias, k0, v0, k1, v1, sums, maxes, outs) -> out. With one
    part, k1 and v1 are k0 and v0 again and unused.
    """
    cuda, shape = target == "cuda", AttentionShape(**sizes)
    if shape.batch is None:  # each kernel its own variable
        return tuple(
            kernel(replace(shape, batch=tirx.Var("batch", "int64")), scale, phi, cuda)
            for kernel in (_partial, _combine)
        )
    return _partial(shape, scale, phi, cuda), _combine(shape, scale, phi, cuda)


def _lanes(dim: int) -> int:
    return next(w for w in (16, 8, 4, 2, 1) if dim % w == 0)


def _buffers(s: AttentionShape) -> dict[str, tuple[int, ...]]:
    second = s.lengths[1] if len(s.lengths) > 1 else s.lengths[0]
    c = sum(s.chunks)
    return {
        "q": (s.batch, s.heads, s.new, s.dim),
        "bias": (s.batch, s.bias_heads, s.new, s.total),
        "k0": (s.batch, s.kv_heads, s.lengths[0], s.dim),
        "k1": (s.batch, s.kv_heads, second, s.dim),
        "sums": (s.batch, s.heads, s.new, c),
        "outs": (s.batch, s.heads, s.new, c, s.dim),
    }


def _macros(s: AttentionShape, scale: float, cuda: bool) -> tuple[Any, Any]:
    """(vector, accumulate): the inner loops' kind (vectorized on CPUs) and a TIR macro shared by
    the kernels: for `count` tokens from `start` of a part, the score x = scale * q . k + bias
    (the dot product in L-lane vectors, into stat[2]), stat[1] = max(stat[1], x) when `track`,
    stat[0] += e^(x - shift) and acc += e^(x - shift) * v."""
    D, G, HB = s.dim, s.heads // s.kv_heads, s.bias_heads
    L = 1 if cuda else _lanes(D)
    vector = T.serial if cuda else T.vectorized

    @T.macro
    def score(q, bias, k, lane, stat, b, h, n, t, t_bias):
        for j in vector(L):
            lane[j] = T.float32(0)
        for do in range(D // L):
            for j in vector(L):
                lane[j] = lane[j] + q[b, h, n, do * L + j] * k[b, h // G, t, do * L + j]
        stat[2] = T.float32(0)
        for j in range(L):
            stat[2] = stat[2] + lane[j]
        stat[2] = stat[2] * T.float32(scale) + bias[b, h % HB, n, t_bias]

    @T.macro
    def accumulate(q, bias, k, v, acc, lane, stat, b, h, n, start, count, offset, shift, track):
        for t in range(count):
            score(q, bias, k, lane, stat, b, h, n, start + t, offset + start + t)
            if track:
                stat[1] = T.max(stat[1], stat[2])
            stat[2] = T.exp(stat[2] - shift)
            stat[0] = stat[0] + stat[2]
            for d in vector(D):
                acc[d] = acc[d] + stat[2] * v[b, h // G, start + t, d]

    return vector, accumulate


def _partial(s: AttentionShape, scale: float, phi: float, cuda: bool) -> Any:  # noqa: C901
    shapes = _buffers(s)
    B, H, N, D, C = s.batch, s.heads, s.new, s.dim, s.chunk
    T0, T1 = s.lengths[0], (s.lengths[1] if len(s.lengths) > 1 else 0)
    C0, NC = s.chunks[0], sum(s.chunks)
    L, TASKS = 1 if cuda else _lanes(D), B * H * NC
    vector, accumulate = _macros(s, scale, cuda)

    @T.macro
    def task(q, bias, k0, v0, k1, v1, sums, maxes, outs, index):
        b = index // (H * NC)
        h = index // NC % H
        c = index % NC
        acc = T.decl_buffer((D,), "float32", scope="local")
        lane = T.decl_buffer((L,), "float32", scope="local")
        stat = T.decl_buffer((3,), "float32", scope="local")  # sum, max, term
        for n in range(N):
            for d in vector(D):
                acc[d] = T.float32(0)
            stat[0] = T.float32(0)
            stat[1] = T.min_value("float32")
            if c < C0:
                accumulate(q, bias, k0, v0, acc, lane, stat, b, h, n, c * C,
                           T.min(C, T0 - c * C), 0, T.float32(phi), True)  # fmt: skip
            elif T1 > 0:
                accumulate(q, bias, k1, v1, acc, lane, stat, b, h, n, (c - C0) * C,
                           T.min(C, T1 - (c - C0) * C), T0, T.float32(phi), True)  # fmt: skip
            sums[b, h, n, c] = stat[0]
            maxes[b, h, n, c] = stat[1]
            for d in vector(D):
                outs[b, h, n, c, d] = acc[d]

    @T.prim_func
    def partial(
        q: T.Buffer(shapes["q"], "float32"),
        bias: T.Buffer(shapes["bias"], "float32"),
        k0: T.Buffer(shapes["k0"], "float32"),
        v0: T.Buffer(shapes["k0"], "float32"),
        k1: T.Buffer(shapes["k1"], "float32"),
        v1: T.Buffer(shapes["k1"], "float32"),
        sums: T.Buffer(shapes["sums"], "float32"),
        maxes: T.Buffer(shapes["sums"], "float32"),
        outs: T.Buffer(shapes["outs"], "float32"),
    ):
        T.func_attr(_SCHEDULED)
        if cuda:
            for bx in T.thread_binding((TASKS + THREADS - 1) // THREADS, "blockIdx.x"):
                for tx in T.thread_binding(THREADS, "threadIdx.x"):
                    if bx * THREADS + tx < TASKS:
                        task(q, bias, k0, v0, k1, v1, sums, maxes, outs, bx * THREADS + tx)
        else:
            for index in T.parallel(TASKS):
                task(q, bias, k0, v0, k1, v1, sums, maxes, outs, index)

    return partial


def _combine(s: AttentionShape, scale: float, phi: float, cuda: bool) -> Any:  # noqa: C901
    shapes = _buffers(s)
    B, H, N, D = s.batch, s.heads, s.new, s.dim
    T0, T1 = s.lengths[0], (s.lengths[1] if len(s.lengths) > 1 else 0)
    NC, L, ROWS = sum(s.chunks), 1 if cuda else _lanes(D), B * H * N
    vector, accumulate = _macros(s, scale, cuda)

    @T.macro
    def row(q, bias, k0, v0, k1, v1, sums, maxes, outs, out, index):
        b = index // (H * N)
        h = index // N % H
        n = index % N
        acc = T.decl_buffer((D,), "float32", scope="local")
        lane = T.decl_buffer((L,), "float32", scope="local")
        stat = T.decl_buffer((3,), "float32", scope="local")  # sum, max, term
        for d in vector(D):
            acc[d] = T.float32(0)
        stat[0] = T.float32(0)
        stat[1] = T.min_value("float32")
        for c in range(NC):
            stat[1] = T.max(stat[1], maxes[b, h, n, c])
        if stat[1] - T.float32(phi) <= T.float32(HIGH) and stat[1] - T.float32(phi) >= T.float32(
            LOW
        ):
            for c in range(NC):
                stat[0] = stat[0] + sums[b, h, n, c]
                for d in vector(D):
                    acc[d] = acc[d] + outs[b, h, n, c, d]
        else:  # the standard softmax, shifted by the row max the chunks found
            accumulate(q, bias, k0, v0, acc, lane, stat, b, h, n, 0, T0, 0, stat[1], False)
            if T1 > 0:
                accumulate(q, bias, k1, v1, acc, lane, stat, b, h, n, 0, T1, T0, stat[1], False)
        for d in vector(D):
            out[b, h, n, d] = acc[d] / stat[0]

    @T.prim_func
    def combine(
        q: T.Buffer(shapes["q"], "float32"),
        bias: T.Buffer(shapes["bias"], "float32"),
        k0: T.Buffer(shapes["k0"], "float32"),
        v0: T.Buffer(shapes["k0"], "float32"),
        k1: T.Buffer(shapes["k1"], "float32"),
        v1: T.Buffer(shapes["k1"], "float32"),
        sums: T.Buffer(shapes["sums"], "float32"),
        maxes: T.Buffer(shapes["sums"], "float32"),
        outs: T.Buffer(shapes["outs"], "float32"),
        out: T.Buffer(shapes["q"], "float32"),
    ):
        T.func_attr(_SCHEDULED)
        if cuda:
            for bx in T.thread_binding((ROWS + THREADS - 1) // THREADS, "blockIdx.x"):
                for tx in T.thread_binding(THREADS, "threadIdx.x"):
                    if bx * THREADS + tx < ROWS:
                        row(q, bias, k0, v0, k1, v1, sums, maxes, outs, out, bx * THREADS + tx)
        else:
            for index in T.parallel(ROWS):
                row(q, bias, k0, v0, k1, v1, sums, maxes, outs, out, index)

    return combine
