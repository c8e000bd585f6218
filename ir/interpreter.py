"""The reference interpreter: runs a graph with each op's numpy `reference` (checks every pass)."""

from __future__ import annotations

import dataclasses

import numpy as np
import sympy

from ember.errors import EmberError, ShapeError
from ember.ir.graph import Graph, Value
from ember.ir.op import Op
from ember.ir.signature import bind_symbols
from ember.ir.types import DType

__all__ = ["concrete", "interpret"]


def _subs(x: object, env: dict[sympy.Symbol, int]) -> object:
    if isinstance(x, sympy.Expr):
        return int(x.subs(env))
    if isinstance(x, tuple):
        return tuple(_subs(e, env) for e in x)
    return x


def concrete(op: Op, env: dict[sympy.Symbol, int]) -> Op:
    """`op` with every symbolic attribute replaced by its value under `env`."""
    changes = {k: _subs(v, env) for k, v in op.attrs.items() if _subs(v, env) is not v}
    return dataclasses.replace(op, **changes) if changes else op


def interpret(g: Graph, *inputs: np.ndarray) -> list[np.ndarray]:
    """Run `g` on numpy inputs; checks every result against the op's inferred type."""
    arrays = [np.asarray(a) for a in inputs]
    env = bind_symbols(
        g.input_names,
        [v.type for v in g.inputs],
        [a.shape for a in arrays],
        [DType.of(a.dtype) for a in arrays],
        g.symbol_ranges,
    )
    values: dict[Value, np.ndarray] = dict(zip(g.inputs, arrays, strict=True))
    values.update(g.consts)
    for node in g.nodes:
        try:
            result = concrete(node.op, env).reference(*(values[v] for v in node.inputs))
        except EmberError:
            raise
        except Exception as err:  # a reference failing on legal input is a bug we must locate
            raise ShapeError(
                f"{node.op} failed in the reference interpreter at {node.loc}: {err}"
            ) from err
        results = result if isinstance(result, tuple) else (result,)
        for v, r in zip(node.outputs, results, strict=True):
            r = np.asarray(r)
            expected = tuple(int(sympy.sympify(d).subs(env)) for d in v.type.shape)
            if r.shape != expected or r.dtype != v.type.dtype.numpy:
                raise ShapeError(
                    f"{node.op}: reference produced {r.dtype}{list(r.shape)} but the op's rule "
                    f"says {v.type} = {v.type.dtype.numpy}{list(expected)}"
                )
            values[v] = r
    return [values[v] for v in g.outputs]
