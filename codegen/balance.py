"""Balance a parallel tile loop between pairs of workers that meet in the middle.

TVM's CPU backend splits a parallel loop statically: with two threads, each takes half the tiles,
and the kernel ends when the slower half does. On this VM the two cores' speeds change
independently (a pure-Python loop pinned to each takes 18 or 28 ms, flipping within seconds), so
a matmul waits for the slow core much of the time. LLVM here has no atomics for a shared tile
counter ("CPU backend does not support atomic add yet"), so workers pair up instead: in each
pair's share of the tiles one worker goes up from the first tile and the other down from the
last, each publishing how far it has *completed*, and each stops where the other has been:

    done = [lo, hi]                      # tiles [lo, done[0]) and [done[1], hi) are complete
    worker 0: t = lo;     while t < done[1]:  tile(t); t += 1; done[0] = t
    worker 1: t = hi - 1; while t >= done[0]: tile(t); done[1] = t; t -= 1

A worker reading a stale `done` of the other only computes a tile twice, never skips one, so
the loop is balanced only when a tile may run twice: its body writes no buffer it reads (a
matmul tile writes its C rows from A and B). Both runs write the same values. A fence after
each publication keeps LLVM from caching the partner's counter in a register (and orders the
store). With fewer pool threads than workers the pool runs the workers in turn, and the later
one finds its pair's tiles complete.

A loop opts in with the annotation `BALANCE` (codegen/cpu_matmul.py sets it on its tile loop);
the pass runs after TVM's lowering pipeline, on x86 LLVM targets with an even core count.
"""

from __future__ import annotations

from typing import Any

import tvm
import tvm_ffi
from tvm import tirx
from tvm.tirx import compilation_pipeline as pipelines

__all__ = ["BALANCE", "balance_parallel_tiles", "tir_pipeline"]

BALANCE = "ember.balance"


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
        roots = _roots(func)
        return tvm_ffi.structural_map(
            func, [(tirx.For, lambda loop: _balance(loop, workers, roots))]
        )

    return tirx.transform.prim_func_pass(transform, opt_level=0, name="BalanceParallelTiles")


def _balance(loop: tirx.For, workers: int, roots: dict[int, int]) -> tirx.Stmt:
    if (
        loop.kind != tirx.ForKind.PARALLEL
        or BALANCE not in loop.annotations
        or not _idempotent(loop.body, roots)
    ):
        return loop
    index = str(loop.loop_var.ty.dtype)
    pairs = workers // 2
    done = tirx.decl_buffer((2 * pairs,), index, name="balance_done")
    cur = tirx.decl_buffer((1,), index, name="balance_cur", scope="local")
    worker = tirx.Var("balance_worker", index)
    zero = tirx.const(0, index)
    first, count = loop.min, loop.extent

    def bound(p: Any) -> Any:  # the first tile of pair p's share
        return first + count * p // pairs

    pair, down = worker // 2, worker % 2 == 1
    lo, hi = bound(pair), bound(pair + 1)
    mine, theirs = 2 * pair + down.astype(index), 2 * pair + 1 - down.astype(index)
    allocs, tile = _leading_allocations(loop.body)
    if any(_allocates(stmt) for stmt in tile):
        return loop  # LLVM codegen cannot allocate inside a while loop
    t = loop.loop_var
    step = tirx.SeqStmt(
        [
            tirx.Bind(t, tirx.BufferLoad(cur, [0])),
            *tile,
            tirx.BufferStore(done, tirx.Select(down, t, t + 1), [mine]),
            tirx.BufferStore(cur, tirx.Select(down, t - 1, t + 1), [0]),
            tirx.Evaluate(tirx.call_llvm_intrin("void", "llvm.x86.sse2.mfence")),
        ]
    )
    here = tirx.BufferLoad(cur, [0])
    partner = tirx.BufferLoad(done, [theirs])
    body = tirx.SeqStmt(
        [
            tirx.AllocBuffer(cur),
            *allocs,  # once per worker, outside the while loop
            tirx.BufferStore(cur, tirx.Select(down, hi - 1, lo), [0]),
            tirx.While(tirx.Select(down, here >= partner, here < partner), step),
        ]
    )
    init = [
        tirx.BufferStore(done, bound(p + side), [2 * p + side])
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
