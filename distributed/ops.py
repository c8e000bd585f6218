"""Expert-parallel ops: token-count exchange, all-to-all as an async start/wait pair, and the
expert matmul over rows grouped by (source rank, local expert).

The collectives lower to calls of the TVM global functions that `ember.distributed.collectives`
registers around `torch.distributed`; the compiled VM calls them in program order (`impure`
ops stay outside Relax dataflow blocks, so the start/wait order the passes chose is kept).
Their numpy `reference` runs the same collective, so it needs the process group too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ember.ir.op import Op, register_op
from ember.ir.ops._shapes import dims_equal
from ember.ir.types import Dim, DType, TensorType

__all__ = ["AllToAllStart", "AllToAllWait", "ExchangeCounts", "ExpertMm"]

_PREFIX = "ember.distributed."


def _call_packed(ctx: Any, name: str, args: list[Any], out: TensorType) -> Any:
    """Emit an impure call of the global function `name`; dynamic rows are bound by match_cast."""
    from tvm import relax

    result = ctx.bb.emit(
        relax.Call(
            relax.ExternFunc(_PREFIX + name),
            args,
            None,
            [relax.TensorType(ndim=out.rank, dtype=out.dtype.tvm)],
        )
    )
    shape = [ctx.dim(d) for d in out.shape]
    return ctx.bb.match_cast(result, relax.TensorType(shape, out.dtype.tvm))


def _collectives() -> Any:
    from ember.distributed import collectives

    return collectives


@register_op
@dataclass(frozen=True)
class ExchangeCounts(Op):
    """Per-expert row counts (E,) sent to every expert's owner: out[src, e] is how many rows
    rank `src` sends to this rank's local expert e. E = world_size * experts per rank."""

    name: ClassVar[str] = "exchange_counts"
    impure: ClassVar[bool] = True
    world_size: int = 1

    def infer(self, counts: TensorType) -> TensorType:
        if counts.rank != 1 or not counts.dtype.is_int:
            raise self.error(f"counts must be a 1-D integer tensor, got {counts}")
        experts = counts.shape[0]
        if not isinstance(experts, int) or experts % self.world_size:
            raise self.error(f"{experts} experts do not split over {self.world_size} ranks")
        return TensorType((self.world_size, experts // self.world_size), DType.int64)

    def reference(self, counts: np.ndarray) -> np.ndarray:
        return _collectives().exchange_counts(counts.astype(np.int64))

    def lower(self, ctx: Any, args: Any) -> Any:
        return _call_packed(ctx, "exchange_counts", list(args), ctx.out_types[0])


@register_op
@dataclass(frozen=True)
class AllToAllStart(Op):
    """Starts sending x's rows: the first send_splits[0] rows to rank 0, the next to rank 1, ...,
    receiving recv_splits[r] rows from rank r. Returns a handle for `all_to_all_wait`.

    `phase` ("dispatch" or "combine") labels the call in the runtime's timestamps.
    """

    name: ClassVar[str] = "all_to_all_start"
    impure: ClassVar[bool] = True
    phase: str = "dispatch"

    def infer(self, x: TensorType, send: TensorType, recv: TensorType) -> TensorType:
        if x.rank != 2 or send.rank != 1 or recv.rank != 1:
            raise self.error(f"expects rows (S,K), splits (R,), (R,); got {x}, {send}, {recv}")
        if not (send.dtype.is_int and recv.dtype.is_int) or not dims_equal(
            send.shape[0], recv.shape[0]
        ):
            raise self.error(f"splits must be integers of one length, got {send} and {recv}")
        return TensorType((1,), DType.int64)

    def reference(self, x: np.ndarray, send: np.ndarray, recv: np.ndarray) -> np.ndarray:
        return _collectives().all_to_all_start(x, send, recv, self.phase)

    def lower(self, ctx: Any, args: Any) -> Any:
        from tvm import relax

        args = [*args, relax.expr.String(self.phase)]
        return _call_packed(ctx, "all_to_all_start", args, ctx.out_types[0])


@register_op
@dataclass(frozen=True)
class AllToAllWait(Op):
    """Waits for the all-to-all behind `handle`; returns the received (rows, cols) tensor.

    `rows` is usually a fresh symbol: how many rows arrive depends on the routing.
    """

    name: ClassVar[str] = "all_to_all_wait"
    impure: ClassVar[bool] = True
    rows: Dim = 0
    cols: Dim = 0
    dtype: DType = DType.float32

    def infer(self, handle: TensorType) -> TensorType:
        if handle.shape != (1,) or handle.dtype != DType.int64:
            raise self.error(f"expects the i64[1] handle of all_to_all_start, got {handle}")
        return TensorType((self.rows, self.cols), self.dtype)

    def reference(self, handle: np.ndarray) -> np.ndarray:
        return _collectives().all_to_all_wait(handle)

    def lower(self, ctx: Any, args: Any) -> Any:
        return _call_packed(ctx, "all_to_all_wait", list(args), ctx.out_types[0])


@register_op
@dataclass(frozen=True)
class ExpertMm(Op):
    """out[i] = x[i] @ w[g(i) % period], g(i) = min(#{j : offsets[j] <= i}, G - 1).

    The rows an expert-parallel rank receives are grouped by (source rank, local expert), so
    group g uses local expert g % period (period = experts per rank). x is (N, K), w
    (period, K, F), offsets (G,) the inclusive cumulative group sizes (rows past the last offset
    count as the last group), float32. Lowered to the row-GEMM kernel of `grouped_mm`
    (codegen/row_gemm.py): each row reads its expert's weight rows.
    """

    name: ClassVar[str] = "expert_mm"
    period: int = 1

    def infer(self, x: TensorType, w: TensorType, offsets: TensorType) -> TensorType:
        if x.rank != 2 or w.rank != 3 or offsets.rank != 1:
            raise self.error(f"expects x (N,K), w (E,K,F), offsets (G,); got {x}, {w}, {offsets}")
        if x.dtype.tvm != "float32" or w.dtype != x.dtype or not offsets.dtype.is_int:
            raise self.error(f"needs float32 x and w, int offsets: {x}, {w}, {offsets}")
        if not dims_equal(x.shape[1], w.shape[1]) or not dims_equal(w.shape[0], self.period):
            raise self.error(f"shapes disagree: x {x}, w {w}, period {self.period}")
        return TensorType((x.shape[0], w.shape[2]), x.dtype)

    def reference(self, x: np.ndarray, w: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        groups = np.searchsorted(offsets.astype(np.int64), np.arange(x.shape[0]), side="right")
        experts = np.minimum(groups, len(offsets) - 1) % self.period
        rows = np.einsum("nk,nkf->nf", x.astype(np.float64), w[experts].astype(np.float64))
        return rows.astype(x.dtype)

    def lower(self, ctx: Any, args: Any) -> Any:
        from tvm import relax

        x, w, offsets = args
        experts = ctx.bb.emit_te(self._experts, x, offsets, primfunc_name_hint="expert_index")
        period, k, f = (int(d) for d in ctx.node.inputs[1].type.shape)
        (kernel,) = ctx.kernels("row_gemm", period, k, f)
        out = relax.TensorType(ctx.shape(0), ctx.out_types[0].dtype.tvm)
        return ctx.bb.emit(relax.call_tir(kernel, [x, w, experts], out))

    def _experts(self, x: Any, offsets: Any) -> Any:
        from tvm import te, tirx

        from ember.ir.ops.moe import group_index

        group = group_index(x, offsets)
        last = tirx.Cast("int64", offsets.shape[0]) - 1
        return te.compute(
            group.shape,
            lambda i: tirx.floormod(tirx.min(group[i], last), self.period),
            name="expert",
        )
