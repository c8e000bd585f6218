"""Balance a parallel tile loop between pairs of workers that meet in the middle.

TVM's CPU backend splits a parallel loop statically: with two threads, each takes half the tiles,
and the kernel ends when the slower half does. On this VM the two cores' speeds change
independently (a pure-Python loop pinned to each takes 18 or 28 ms, flipping within seconds), so
a matmul waits for the slow core much of the time. LLVM here has no atomics for a shared tile
counter ("CPU backend does not support atomic add yet"), so workers pair up instead: in each
pair's share of the tiles one worker goes up from the first tile and the other down from the
last, a chunk of tiles at a time. Before computing a chunk a worker publishes its *claim* (how
far its chunks reach), and it takes its next chunk only up to the partner's claim:

    done = [lo, hi]              # worker 0 claimed tiles [lo, done[0]), worker 1 [done[1], hi)
    worker 0: e = lo; while (n = min(chunk, done[1] - e)) > 0: done[0] = e + n; tiles [e, e + n);
                                                                e += n
    worker 1: e = hi; while (n = min(chunk, e - done[0])) > 0: done[1] = e - n; tiles [e - n, e);
                                                                e -= n

Every claimed tile is computed by its claimant, and a worker stops only at the partner's claim,
so no tile is skipped; a worker reading a stale claim (both claiming at the same moment) only
computes a chunk the partner computes too. So the loop is balanced only when a tile may run
twice: its body writes no buffer it reads (a matmul tile writes its C rows from A and B), and
both runs write the same values. A fence after each claim, and another before reading the
partner's, keeps LLVM from caching the counters in registers (and orders the store before the
load); the counters sit on separate cache lines, and a chunk holds about `CHUNK_FMAS` of work
(at most an eighth of the pair's share, so the one chunk still running when the partner stops
is short). With fewer pool threads than workers the pool runs the workers in turn, and the later
one finds its pair's tiles claimed.

A loop opts in with the annotation `BALANCE` (its value: the most tiles in a chunk);
codegen/cpu_matmul.py and codegen/row_gemm.py set it on the tile loops `worth_balancing`. The
pass runs after TVM's lowering pipeline, on x86 LLVM targets with an even core count.
"""

from __future__ import annotations

from typing import Any

import tvm
import tvm_ffi
from tvm import tirx
from tvm.tirx import compilation_pipeline as pipelines

__all__ = [
    "BALANCE",
    "CHUNK_FMAS",
    "balance_parallel_tiles",
    "chunk_tiles",
    "tir_pipeline",
    "worth_balancing",
]

BALANCE = "ember.balance"
# Below this much work per tile, or in a whole kernel of known size, the claims (fences, the
# partner's cache line moving to this core) cost more than balancing saves: the tiny zoo models
# (matmuls of 16 tiles of 8 x 32, K 128-512) ran 1-3% slower with a claim per tile.
MIN_TILE_FMAS = 1 << 17
MIN_KERNEL_FMAS = 1 << 23
# A worker reads its partner's progress and publishes its own once per chunk of tiles, of about
# this much work: once per 6 x 64 x 512 tile ran 3% slower than the static split when the cores
# were equally fast, chunks of 4 such tiles as fast (and 16% faster in the median).
CHUNK_FMAS = 1 << 20
_LINE = 8  # int64s per 64-byte cache line: each worker publishes on a line of its own


def worth_balancing(tile_fmas: int, tiles: int | Any) -> bool:
    """Whether to balance a loop of `tiles` tiles (an int when known at compile time)."""
    known = isinstance(tiles, int)
    return tile_fmas >= MIN_TILE_FMAS and (not known or tiles * tile_fmas >= MIN_KERNEL_FMAS)


def chunk_tiles(tile_fmas: int) -> int:
    """The `BALANCE` annotation for tiles of `tile_fmas`: the most tiles in one chunk."""
    return max(1, CHUNK_FMAS // tile_fmas)


def tir_pipeline(target: tvm.target.Target) -> str:
    """The name of the TIR pipeline to build for `target` with: TVM's default, followed by
    `balance_parallel_tiles` on x86 CPUs with an even core count."""
    cores = int(target.attrs.get("num-cores", 0) or 0)
    if target.kind.name != "llvm" or cores < 2 or cores % 2 or not _x86(target):
        return "default"
    name = f"ember_balanced_{cores}"
    if name not in pipelines.PIPELINE_MAP:

        def factory() -> tuple[Any, Any, Any]:
            lower, finalize_host, finalize_device = pipelines.get_tir_pipeline("default")
            lowered = tvm.transform.Sequential([lower, balance_parallel_tiles(cores)])
            return lowered, finalize_host, finalize_device

        pipelines.register_tir_pipeline(name, factory)
    return name


def balance_parallel_tiles(workers: int) -> Any:
    """A PrimFunc pass rewriting every `BALANCE`-annotated parallel loop for `workers` (even)."""

    def transform(func: tirx.PrimFunc, _mod: Any, _ctx: Any) -> tirx.PrimFunc:
        return tvm_ffi.structural_map(
            func, [(tirx.For, lambda loop: _balance(loop, workers, func))]
        )

    return tirx.transform.prim_func_pass(transform, opt_level=0, name="BalanceParallelTiles")


def _balance(loop: tirx.For, workers: int, func: tirx.PrimFunc) -> tirx.Stmt:
    if (
        loop.kind != tirx.ForKind.PARALLEL
        or BALANCE not in loop.annotations
        or not _idempotent(loop.body, _roots(func))  # only walked for annotated loops
    ):
        return loop
    allocs, tile = _leading_allocations(loop.body)
    if any(_allocates(stmt) for stmt in tile):
        return loop  # LLVM codegen cannot allocate inside a while loop
    index = str(loop.loop_var.ty.dtype)
    pairs = workers // 2
    done = tirx.decl_buffer((2 * pairs * _LINE,), index, name="balance_done")
    edge = tirx.decl_buffer((1,), index, name="balance_edge", scope="local")
    span = tirx.decl_buffer((1,), index, name="balance_span", scope="local")
    worker = tirx.Var("balance_worker", index)
    c = tirx.Var("balance_c", index)
    zero, one = tirx.const(0, index), tirx.const(1, index)

    def bound(p: Any) -> Any:  # the first tile of pair p's share
        return loop.min + loop.extent * p // pairs

    pair, down = worker // 2, worker % 2 == 1
    most = tirx.const(int(loop.annotations[BALANCE]), index)  # tiles per chunk, at most
    chunk = tirx.Max(tirx.Min(most, (bound(pair + 1) - bound(pair)) // 8), one)  # 4 a worker
    mine = (2 * pair + down.astype(index)) * _LINE
    theirs = (2 * pair + 1 - down.astype(index)) * _LINE
    here, partner = tirx.BufferLoad(edge, [0]), tirx.BufferLoad(done, [theirs])
    next_span = tirx.BufferStore(  # at most `chunk` tiles, up to the partner's claim
        span,
        tirx.Select(
            down, here - tirx.Max(here - chunk, partner), tirx.Min(here + chunk, partner) - here
        ),
        [0],
    )
    width = tirx.BufferLoad(span, [0])
    visit = tirx.SeqStmt(
        [tirx.Bind(loop.loop_var, tirx.Select(down, here - 1 - c, here + c)), *tile]
    )
    fence = tirx.Evaluate(tirx.call_llvm_intrin("void", "llvm.x86.sse2.mfence"))
    claimed = tirx.Select(down, here - width, here + width)
    step = tirx.SeqStmt(
        [
            tirx.BufferStore(done, claimed, [mine]),  # claim the chunk, then compute it
            fence,
            tirx.For(c, zero, most, tirx.ForKind.SERIAL, tirx.IfThenElse(c < width, visit, None)),
            tirx.BufferStore(edge, claimed, [0]),
            fence,  # the partner's claim is read afresh
            next_span,
        ]
    )
    body = tirx.SeqStmt(
        [
            tirx.AllocBuffer(edge),
            tirx.AllocBuffer(span),
            *allocs,  # once per worker, outside the while loop
            tirx.BufferStore(edge, tirx.Select(down, bound(pair + 1), bound(pair)), [0]),
            next_span,
            tirx.While(width > 0, step),
        ]
    )
    init = [
        tirx.BufferStore(done, bound(p + side), [(2 * p + side) * _LINE])
        for p in range(pairs)
        for side in (0, 1)
    ]
    return tirx.SeqStmt(
        [
            tirx.AllocBuffer(done),
            *init,
            tirx.For(worker, zero, tirx.const(workers, index), tirx.ForKind.PARALLEL, body),
        ]
    )


def _leading_allocations(body: tirx.Stmt) -> tuple[list[tirx.Stmt], list[tirx.Stmt]]:
    """The tile body's own buffer allocations (the statements it starts with) and the rest."""
    stmts = list(body.seq) if isinstance(body, tirx.SeqStmt) else [body]
    n = next((i for i, s in enumerate(stmts) if not isinstance(s, tirx.AllocBuffer)), len(stmts))
    return stmts[:n], stmts[n:]


def _allocates(stmt: tirx.Stmt) -> bool:
    found = []
    tvm_ffi.structural_map(stmt, [(tirx.AllocBuffer, lambda node: found.append(node) or node)])
    return bool(found)


def _roots(func: tirx.PrimFunc) -> dict[int, int]:
    """Buffer id -> the id of the buffer whose memory it views (`decl_buffer(data=x.data)`)."""
    parent: dict[int, int] = {}

    def seen(node: Any) -> Any:
        if isinstance(node, tirx.DeclBuffer):
            args = getattr(node.data, "args", ())
            if len(args) == 1 and isinstance(args[0], tirx.Var):
                parent[node.buffer.id_] = args[0].id_
        return node

    tvm_ffi.structural_map(func, seen)
    roots = {}
    for child in parent:
        root = child
        while root in parent:
            root = parent[root]
        roots[child] = root
    return roots


def _idempotent(body: tirx.Stmt, roots: dict[int, int]) -> bool:
    """Whether running `body` twice gives what running it once does: no memory it stores to
    (other than its own allocations) is also loaded."""
    stored, loaded, local = set(), set(), set()

    def seen(node: Any) -> Any:
        if isinstance(node, tirx.BufferStore):
            stored.add(node.buffer.id_)
        elif isinstance(node, tvm.ir.expr.TensorLoad):  # what tirx.BufferLoad makes
            loaded.add(node.source.id_)
        elif isinstance(node, tirx.AllocBuffer):
            local.add(node.buffer.id_)
        return node

    tvm_ffi.structural_map(body, seen)

    def memory(buffers: set[int]) -> set[int]:
        return {roots.get(b, b) for b in buffers}

    return not (memory(stored) - memory(local)) & memory(loaded)


def _x86(target: tvm.target.Target) -> bool:
    """Whether an LLVM target is x86 (the fence is an x86 intrinsic)."""
    triple = str(target.attrs.get("mtriple", "")) or tvm.target.codegen.llvm_get_system_triple()
    return triple.startswith(("x86_64", "i686"))
