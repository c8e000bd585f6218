"""The CPU kernel of the mixture-of-experts matmuls (`grouped_mm`, `expert_mm`): every row of x
times the weight of its own expert, y[i] = x[i] @ w[expert[i]], for any row count.

Rows arrive sorted by expert, so a tile of ROWS consecutive rows mostly shares one weight, but
the kernel never assumes it: each row reads its expert's weight rows. A tile of ROWS x COLS
accumulators (6 x 64 floats: 24 AVX-512 registers) stays in registers while K streams by,
vectorized along the columns; row tiles run in parallel, balanced between the cores when they
are big enough (codegen/balance.py). The last tile re-reads the last row
instead of branching in the inner loop and stores only the real rows. A row whose expert index
is `experts` or more (past the last group of `grouped_mm`) gets zeros.
"""

# no `from __future__ import annotations`: TVMScript resolves buffer annotations then by
# searching the calling frames (see codegen/async_softmax.py)
from typing import Any

from tvm.script import tirx as T

from ember.codegen.balance import BALANCE, chunk_tiles, worth_balancing

__all__ = ["COLS", "ROWS", "kernels"]

ROWS = 6
COLS = 64


def kernels(experts: int, k: int, f: int, target: str) -> tuple[Any]:  # noqa: C901 (TVMScript)
    """The PrimFunc (x[n, k], w[experts, k, f], expert[n] int64) -> y[n, f], float32, n
    symbolic; CPU (`target` "llvm") only."""
    if target != "llvm":
        raise ValueError(f"row_gemm has a CPU schedule only, not {target}")
    cols = next(c for c in (COLS, 32, 16, 8, 4, 2, 1) if f % c == 0)
    fmas = ROWS * f * k  # a tile: every column of its rows
    balance = {BALANCE: chunk_tiles(fmas)} if worth_balancing(fmas, None) else {}  # n symbolic
    last = experts - 1

    @T.prim_func
    def row_gemm(
        x_handle: T.handle,
        w: T.Buffer((experts, k, f), "float32"),
        expert_handle: T.handle,
        y_handle: T.handle,
    ):
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
        n = T.int64()
        x = T.match_buffer(x_handle, (n, k), "float32")
        expert = T.match_buffer(expert_handle, (n,), "int64")
        y = T.match_buffer(y_handle, (n, f), "float32")
        for t in T.parallel((n + ROWS - 1) // ROWS, annotations=balance):
            acc = T.decl_buffer((ROWS, cols), "float32", scope="local")
            for c in range(f // cols):
                for i in T.unroll(ROWS):
                    for j in T.vectorized(cols):
                        acc[i, j] = T.float32(0)
                for kk in range(k):
                    for i in T.unroll(ROWS):
                        row = T.min(t * ROWS + i, n - 1)
                        for j in T.vectorized(cols):
                            acc[i, j] = (
                                acc[i, j]
                                + x[row, kk] * w[T.min(expert[row], last), kk, c * cols + j]
                            )
                for i in T.unroll(ROWS):
                    if t * ROWS + i < n:
                        for j in T.vectorized(cols):
                            y[t * ROWS + i, c * cols + j] = T.Select(
                                expert[t * ROWS + i] <= last, acc[i, j], T.float32(0)
                            )

    return (row_gemm,)
