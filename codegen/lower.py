"""Graph → Relax: every node becomes one TE function (`Op.lower`), weights become constants.

One exception, a GEMM prologue: a gather or concat whose only reader is the A operand of a CPU
`packed_matmul` (autobatch blocks: `matmul(concat(gather(h, i), gather(h, j)), w)`) is lowered
into the matmul's own TE function. Relax FuseOps never fuses producers into a matmul, so each
would otherwise be a kernel of its own writing A to memory; inside, the CPU Matmul schedule folds
them into its copy of A (codegen/cpu_matmul.py).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy
from tvm import relax, tirx

from ember.errors import CodegenError
from ember.ir import Dim, Graph, Node, Op, TensorType, Value

__all__ = ["LowerContext", "to_relax"]

# Relax FuseOps' op patterns (tvm/relay/op_attr_types.h OpPatternKind)
INJECTIVE = 2
OUT_ELEMWISE_FUSABLE = 4
_PROLOGUE_OPS = frozenset({"gather", "concat"})
# ops whose data-dependent reads make AnnotateTIROpPattern call them opaque, which keeps them out
# of every fused kernel: a gather is injective (autobatch's gathered arguments then fuse into
# the elementwise kernels reading them)
_PATTERNS = {"gather": INJECTIVE}


@dataclass(frozen=True)
class _Prologue:
    """A node lowered into its consumer: its TE compute and the arguments it was given."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]


class LowerContext:
    """What an op's `lower` sees: the block builder, its node, and sympy → TIR conversion."""

    def __init__(self, bb: relax.BlockBuilder, symbols: dict[sympy.Symbol, tirx.Var]) -> None:
        self.bb = bb
        self.symbols = symbols
        self.node: Node | None = None
        self.defer = False  # the node is a GEMM prologue: emit_te records it instead

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
        """Emit `fn(*args)` as one TE function (a GEMM prologue's is kept for its reader)."""
        assert self.node is not None
        if self.defer:
            return _Prologue(fn, args)
        pattern = _PATTERNS.get(self.node.op.name)
        if any(isinstance(a, _Prologue) for a in args):
            fn, args = _with_prologues(fn, args)
            pattern = OUT_ELEMWISE_FUSABLE  # still a matmul: its epilogue fuses as before
        var = self.bb.emit_te(fn, *args, primfunc_name_hint=self.node.op.name)
        if pattern is not None:  # else AnnotateTIROpPattern infers it
            gv = self.bb.lookup_binding(var).args[0]
            self.bb.update_func(gv, self.bb.get()[gv].with_attr("op_pattern", pattern))
        return var

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


def _with_prologues(
    fn: Callable[..., Any], args: tuple[Any, ...]
) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """`fn` over `args` whose prologues are computed inside: one function of their leaves."""
    leaves: list[Any] = []

    def tree(a: Any) -> Any:  # a leaf's position, or (prologue fn, its argument trees)
        if isinstance(a, _Prologue):
            return (a.fn, [tree(x) for x in a.args])
        leaves.append(a)
        return len(leaves) - 1

    trees = [tree(a) for a in args]

    def build(t: Any, tensors: tuple[Any, ...]) -> Any:
        if isinstance(t, int):
            return tensors[t]
        return t[0](*(build(x, tensors) for x in t[1]))

    return (lambda *tensors: fn(*(build(t, tensors) for t in trees))), tuple(leaves)


def _prologues(g: Graph) -> set[Node]:
    """Gathers and concats computed inside the CPU matmul reading them as A (see module doc):
    each has one reader, which is that matmul or another such node."""
    found: set[Node] = set()
    outputs = set(g.outputs)
    for node in reversed(g.nodes):
        if node.op.name not in _PROLOGUE_OPS or type(node.op).lower is not Op.lower:
            continue
        (v,) = node.outputs
        readers = g.users.get(v, [])
        if v in outputs or len(readers) != 1 or readers[0].inputs.count(v) != 1:
            continue
        reader = readers[0]
        gemm = (
            reader.op.name == "packed_matmul"
            and type(reader.op).lower is Op.lower
            and reader.inputs[0] == v
        )
        if gemm or reader in found:
            found.add(node)
    return found


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
    prologues = _prologues(g)
    with bb.function("main", params):
        with contextlib.nullcontext() if impure else bb.dataflow():
            for v, array in g.consts.items():
                env[v] = _const(array, v.type)
            for node in g.nodes:
                ctx.node, ctx.defer = node, node in prologues
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
