"""Graph → Relax: every node becomes one TE function (`Op.lower`), weights become constants."""

from __future__ import annotations

import contextlib
import functools
import importlib
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import sympy
from tvm import relax, tirx

from ember.errors import CodegenError
from ember.ir import Dim, Graph, Node, TensorType, Value

__all__ = ["LowerContext", "to_relax"]


class LowerContext:
    """What an op's `lower` sees: the block builder, its node, and sympy → TIR conversion."""

    def __init__(self, bb: relax.BlockBuilder, symbols: dict[sympy.Symbol, tirx.Var]) -> None:
        self.bb = bb
        self.symbols = symbols
        self.node: Node | None = None

    @property
    def out_types(self) -> tuple[TensorType, ...]:
        assert self.node is not None
        return tuple(v.type for v in self.node.outputs)

    def dim(self, d: Dim) -> Any:
        """A TIR int64 expression for a static or symbolic dim."""
        return _to_tir(sympy.sympify(d), self.symbols)

    def shape(self, i: int) -> list[Any]:
        return [self.dim(d) for d in self.out_types[i].shape]

    def emit_te(self, fn: Callable[..., Any], *args: Any) -> Any:
        assert self.node is not None
        return self.bb.emit_te(fn, *args, primfunc_name_hint=self.node.op.name)

    def kernels(self, family: str, *params: Any) -> tuple[Any, ...]:
        """Add codegen's hand-written kernels `family` (`ember.codegen.<family>.kernels(*params,
        target=kind)`, PrimFuncs for the current target) to the module; their global vars."""
        from tvm.target import Target

        module = importlib.import_module(f"ember.codegen.{family}")
        funcs = module.kernels(*params, target=Target.current().kind.name)
        return tuple(  # the module names them
            self.bb.add_func(f.without_attr("global_symbol"), f"{family}_{i}")
            for i, f in enumerate(funcs)
        )

    def flat_dispatch(self, table: Any, flat: Any, x: Any, packed: Any, columns: int) -> Any:
        """flat_matmul's call of `flat` (its hand-written kernels) or, when `table` has "gemm"
        intervals, of a function choosing by M at run time (codegen/flat_dispatch.py)."""
        from ember.codegen.flat_dispatch import dispatch_call

        return self.bb.emit(dispatch_call(self.bb, table, flat, x, packed, columns))


def _to_tir(e: sympy.Expr, symbols: dict[sympy.Symbol, tirx.Var]) -> Any:
    if e.is_Integer:
        return tirx.IntImm("int64", int(e))
    if e.is_Symbol:
        if e not in symbols:
            symbols[e] = tirx.Var(e.name, "int64")  # type: ignore[index]
        return symbols[e]  # type: ignore[index]
    if e.is_Add:
        return functools.reduce(operator.add, (_to_tir(a, symbols) for a in e.args))
    if e.is_Mul:
        coeff, rest = e.as_coeff_Mul()
        num, den = sympy.fraction(coeff)
        factors = [_to_tir(a, symbols) for a in sympy.Mul.make_args(rest) if a != 1]
        body = functools.reduce(operator.mul, factors, tirx.IntImm("int64", int(num)))
        return tirx.floordiv(body, int(den)) if den != 1 else body
    if e.is_Pow and e.exp.is_Integer and int(e.exp) > 0:
        return functools.reduce(operator.mul, [_to_tir(e.base, symbols)] * int(e.exp))
    if isinstance(e, sympy.floor | sympy.ceiling):
        num, den = sympy.fraction(sympy.together(e.args[0]))
        n, d = _to_tir(num, symbols), _to_tir(den, symbols)
        return tirx.floordiv(n, d) if isinstance(e, sympy.floor) else tirx.floordiv(n + d - 1, d)
    if isinstance(e, sympy.Max | sympy.Min):
        fn = tirx.max if isinstance(e, sympy.Max) else tirx.min
        return functools.reduce(fn, (_to_tir(a, symbols) for a in e.args))
    raise CodegenError(
        f"cannot lower the symbolic dim {e} to TVM (unsupported expression {type(e).__name__})"
    )


def _relax_type(t: TensorType, ctx: LowerContext) -> relax.TensorType:
    return relax.TensorType([ctx.dim(d) for d in t.shape], t.dtype.tvm)


def _const(array: np.ndarray, t: TensorType) -> relax.Constant:
    from tvm import runtime

    if array.dtype.kind == "V" or str(array.dtype) in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        raw = runtime.empty(array.shape, t.dtype.tvm)
        raw.copyfrom(array)
        return relax.const(raw)
    # np.require, not np.ascontiguousarray: that one turns a 0-d constant into shape [1]
    return relax.const(np.require(array, requirements="C"), t.dtype.tvm)


def to_relax(g: Graph) -> Any:
    """An IRModule whose `main` takes g's inputs and returns a tuple of g's outputs."""
    for v in g.inputs:
        bad = [d for d in v.type.shape if isinstance(d, sympy.Expr) and not d.is_Symbol]
        if bad:
            raise CodegenError(
                f"input {v.name!r} has a computed dim {bad[0]} ({v.type}); inputs' dims must be "
                f"constants or plain symbols"
            )
    bb = relax.BlockBuilder()
    ctx = LowerContext(bb, {})
    params = [
        relax.Var(v.name or f"input{i}", _relax_type(v.type, ctx)) for i, v in enumerate(g.inputs)
    ]
    env: dict[Value, Any] = dict(zip(g.inputs, params, strict=True))
    # collectives are impure calls: lower without a dataflow block, then wrap the pure runs
    # between them in dataflow blocks, so the calls keep the order the graph gives them
    impure = any(getattr(node.op, "impure", False) for node in g.nodes)
    with bb.function("main", params):
        with contextlib.nullcontext() if impure else bb.dataflow():
            for v, array in g.consts.items():
                env[v] = _const(array, v.type)
            for node in g.nodes:
                ctx.node = node
                try:
                    result = node.op.lower(ctx, [env[v] for v in node.inputs])
                except Exception as err:
                    shapes = ", ".join(str(v.type) for v in node.inputs)
                    raise CodegenError(
                        f"lowering {node.op} ({shapes}) at {node.loc} failed: {err}"
                    ) from err
                if isinstance(result, list | tuple):  # one Relax value per output
                    env.update(zip(node.outputs, result, strict=True))
                elif len(node.outputs) == 1:
                    env[node.outputs[0]] = result
                else:  # one TE function with several outputs
                    for i, v in enumerate(node.outputs):
                        env[v] = bb.emit(relax.TupleGetItem(result, i))
            out = (bb.emit if impure else bb.emit_output)(relax.Tuple([env[v] for v in g.outputs]))
        bb.emit_func_output(out)
    return relax.transform.ConvertToDataflow(min_size=1)(bb.get()) if impure else bb.get()
