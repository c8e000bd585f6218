"""Ops of FlashDecoding++'s decoding rewrites (passes/flat_gemm.py, passes/async_softmax.py).

`async_attention` is softmax attention computed with a unified max phi: its value is the
standard attention's, phi only decides how the kernels compute it (codegen/async_softmax.py).
`flat_matmul` is `packed_matmul` with a dispatch table saying which kernel computes it for which
M (codegen/flat_gemm.py). Both lower through codegen's hand-written kernels (`ctx.kernels`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ember.ir.op import Op, register_op
from ember.ir.ops.packed import PackedMatMul, unpack_panels
from ember.ir.types import DType, TensorType

__all__ = ["FLAT_KERNELS", "AsyncAttention", "FlatMatMul", "dispatch_kernel", "static_after_batch"]

FLAT_KERNELS = ("gemv", "flat", "gemm")


@register_op
@dataclass(frozen=True)
class AsyncAttention(Op):
    """softmax(scale * q @ k^T + bias) @ v with q [B, H, N, D], bias [B, 1 or H, N, T] and the
    keys and values given as `parts` pieces [B, KVH, T_p, D] of the sequence (T = sum T_p; KVH
    divides H: grouped-query attention). Inputs: q, bias, k_0.., v_0..

    `phi` is the unified max the kernels subtract; `chunk` the tokens per independent partial
    sum. Neither changes the value. Every dim but the batch is static."""

    name: ClassVar[str] = "async_attention"
    scale: float = 1.0
    phi: float = 0.0
    chunk: int = 256
    parts: int = 1

    def infer(self, q: TensorType, bias: TensorType, *kv: TensorType) -> TensorType:
        if self.parts not in (1, 2) or len(kv) != 2 * self.parts:
            raise self.error(f"takes 1 or 2 key/value parts, got parts={self.parts}, {len(kv)}")
        shapes = [q, bias, *kv]
        if any(t.rank != 4 or not static_after_batch(t) or t.dtype is not DType.float32
               for t in shapes):  # fmt: skip
            raise self.error(
                f"needs float32 rank-4 operands, static but for the batch, got "
                f"{', '.join(map(str, shapes))}"
            )
        b, h, n, d = q.shape
        total = 0
        for k, v in zip(kv[: self.parts], kv[self.parts :], strict=True):
            if k.shape != v.shape or k.shape[0] != b or k.shape[3] != d or int(h) % int(k.shape[1]):
                raise self.error(f"keys/values {k}, {v} do not fit q {q}")
            total += int(k.shape[2])
        if bias.shape[0] != b or bias.shape[1] not in (1, h) or bias.shape[2:] != (n, total):
            raise self.error(f"bias {bias} must be [{b}, 1 or {h}, {n}, {total}]")
        return q

    def reference(self, q: np.ndarray, bias: np.ndarray, *kv: np.ndarray) -> np.ndarray:
        k = np.concatenate(kv[: self.parts], axis=2).astype(np.float64)
        v = np.concatenate(kv[self.parts :], axis=2).astype(np.float64)
        groups = q.shape[1] // k.shape[1]
        k, v = np.repeat(k, groups, axis=1), np.repeat(v, groups, axis=1)
        x = q.astype(np.float64) @ k.swapaxes(2, 3) * self.scale + bias
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True) @ v).astype(q.dtype)

    def lower(self, ctx: Any, args: Any) -> Any:
        from tvm import relax

        q, bias, *kv = ctx.node.inputs
        batch = q.type.shape[0]
        shape = dict(
            batch=batch if isinstance(batch, int) else None, heads=int(q.type.shape[1]), kv_heads=int(kv[0].type.shape[1]),
            new=int(q.type.shape[2]), dim=int(q.type.shape[3]), bias_heads=int(bias.type.shape[1]),
            lengths=tuple(int(k.type.shape[2]) for k in kv[: self.parts]), chunk=self.chunk,
        )  # fmt: skip
        partial, combine = ctx.kernels("async_softmax", shape, self.scale, self.phi)
        keys, values = args[2 : 2 + self.parts], args[2 + self.parts :]
        operands = [*args[:2], keys[0], values[0], keys[-1], values[-1]]
        b, (h, n, d) = ctx.dim(batch), (int(x) for x in q.type.shape[1:])
        chunks = sum(math.ceil(length / self.chunk) for length in shape["lengths"])
        stats = relax.TensorType([b, h, n, chunks], "float32")
        outs = relax.TensorType([b, h, n, chunks, d], "float32")
        partials = ctx.bb.emit(relax.call_tir(partial, operands, [stats, stats, outs]))
        pieces = [ctx.bb.emit(relax.TupleGetItem(partials, i)) for i in range(3)]
        out = relax.TensorType([b, h, n, d], "float32")
        return ctx.bb.emit(relax.call_tir(combine, [*operands, *pieces], out))


def static_after_batch(t: TensorType) -> bool:
    """Whether every dim of `t` but the first (the batch) is static, as async_attention needs."""
    return all(isinstance(d, int) for d in t.shape[1:])


def dispatch_kernel(dispatch: tuple[tuple[int, str], ...], m: int) -> str:
    """The kernel `dispatch` ((largest M, kernel), ... ascending) names for M rows; the last
    entry also takes every larger M."""
    for bound, kernel in dispatch:
        if m <= bound:
            return kernel
    return dispatch[-1][1]


@register_op
@dataclass(frozen=True)
class FlatMatMul(Op):
    """x @ w for x[..., K] and w packed [N_pad / panel, K, panel] (`pack_panels`), N = `columns`;
    `dispatch` ((largest M, kernel), ...) picks the kernel by M = the rows of x: "gemv" (one row
    at a time), "flat" (tiles of up to 8 rows) or "gemm" (the default CPU matmul schedule); at
    build time for a static M, at run time (one program for every M) for a symbolic one."""

    name: ClassVar[str] = "flat_matmul"
    columns: int = 1
    dispatch: tuple[tuple[int, str], ...] = ((0, "flat"),)

    def __post_init__(self) -> None:
        super().__post_init__()
        bounds = [bound for bound, _ in self.dispatch]
        if not self.dispatch or bounds != sorted(bounds):
            raise self.error(f"dispatch {self.dispatch} must be non-empty with ascending M")
        if any(kernel not in FLAT_KERNELS for _, kernel in self.dispatch):
            raise self.error(f"dispatch {self.dispatch}: kernels are {FLAT_KERNELS}")

    def infer(self, x: TensorType, packed: TensorType) -> TensorType:
        return PackedMatMul(columns=self.columns).infer(x, packed)

    def reference(self, x: np.ndarray, packed: np.ndarray) -> np.ndarray:
        w = unpack_panels(packed, self.columns)
        return np.matmul(x.astype(np.float64), w.astype(np.float64)).astype(x.dtype)

    def lower(self, ctx: Any, args: Any) -> Any:
        """A static M gets the one kernel the table names; a symbolic M all the table's
        kernels, chosen by M at run time (codegen/flat_dispatch.py)."""
        from tvm import relax

        x, packed = ctx.node.inputs
        rows = x.type.shape[:-1]
        static = all(isinstance(d, int) for d in rows)
        m = math.prod(rows) if static else None
        table = ((0, dispatch_kernel(self.dispatch, m)),) if static else self.dispatch
        if all(kernel == "gemm" for _, kernel in table):
            return ctx.emit_te(PackedMatMul(columns=self.columns).compute, *args)
        k = int(x.type.shape[-1])
        panels, _, panel = (int(d) for d in packed.type.shape)
        (func,) = ctx.kernels("flat_gemm", table, m, k, panels, panel, self.columns)
        flat = ctx.bb.emit(relax.op.reshape(args[0], [ctx.dim(math.prod(rows)), k]))
        y = ctx.flat_dispatch(table, func, flat, args[1], self.columns)
        return ctx.bb.emit(relax.op.reshape(y, ctx.shape(0)))
