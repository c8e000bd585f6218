"""Run-time dispatch of `flat_matmul` with a symbolic M: one program for every M.

The hand-written kernels ("gemv", "flat") are one PrimFunc for a symbolic m that branches on m
itself (codegen/flat_gemm.py `kernels(dispatch, None, ...)`). The "gemm" intervals of the table
run the default matmul schedule instead: a TE compute that codegen's schedule rules turn into a
kernel of their own (the CPU Matmul rule, dlight's on GPUs). Their branch is a Relax `If` on m
in a small function of the module,

    flat_matmul_dispatch(x [m, k], w) = if m in <gemm intervals>: gemm(x, w) else: flat(x, w)

called from `main` (an `If` may not sit in `main`'s dataflow block). The gemm kernel stays the
one a static build gets, scheduled by the same rule for any target, rather than being spliced
into the hand-written PrimFunc; the cost is one VM branch and call per linear layer.
"""

from __future__ import annotations

from typing import Any

from tvm import relax, tirx

from ember.codegen.flat_gemm import dispatch_condition
from ember.ir.ops.packed import PackedMatMul

__all__ = ["dispatch_call"]


def dispatch_call(
    bb: relax.BlockBuilder,
    dispatch: tuple[tuple[int, str], ...],
    flat: Any,
    x: Any,
    packed: Any,
    columns: int,
) -> Any:
    """The call computing x [m, k] @ unpack(packed): of `flat` (the global var of the
    hand-written kernels' PrimFunc) when `dispatch` names no "gemm" (always for a static m),
    else of a new function choosing between it and the default GEMM by m at run time."""
    m = tirx.Var("m", "int64")  # the new function's own M
    gemm = dispatch_condition(dispatch, m, {"gemm"})
    if gemm is False:
        out = relax.TensorType([x.ty.shape[0], columns], "float32")
        return relax.call_tir(flat, [x, packed], out)
    param = relax.Var("x", relax.TensorType([m, x.ty.shape[1]], "float32"))
    weights = relax.Var("w", packed.ty)
    out = relax.TensorType([m, columns], "float32")
    compute = PackedMatMul(columns=columns).compute
    branches = [
        bb.call_te(compute, param, weights, primfunc_name_hint="flat_matmul_gemm"),
        relax.call_tir(flat, [param, weights], out),
    ]
    chosen = relax.If(relax.prim_value(gemm), *(_bound(call, out) for call in branches))
    func = relax.Function([param, weights], _bound(chosen, out), out)
    return relax.Call(bb.add_func(func, "flat_matmul_dispatch"), [x, packed])


def _bound(expr: Any, ty: Any) -> Any:
    """`expr` bound to a variable, as the body of a function or a branch (a SeqExpr)."""
    y = relax.Var("y", ty)
    return relax.SeqExpr([relax.BindingBlock([relax.VarBinding(y, expr)])], y)
