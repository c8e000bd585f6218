"""pow(x, c) with a constant exponent => products, a square root or a reciprocal.

LLVM lowers a float `pow` to a scalar libm call, so a loop that contains one never vectorizes: the
tanh GELU of GPT-2 (`0.5 x (1 + tanh(k (x + 0.044715 x**3)))`) spent 80% of its MLP's time in
`powf`. x**1, x**2, x**3, x**4, x**0.5 and x**-1 become x, x*x, (x*x)*x, (x*x)*(x*x), sqrt(x) and
1/x (float x only: integer pow keeps numpy's integer semantics). Results agree with pow to a few
ulp.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ember.ir import Builder, Graph, Node, Value, rewrite
from ember.ir.ops import Mul, Pow, Reciprocal, Sqrt
from ember.passes.registry import graph_pass


def _square(b: Builder, x: Value) -> Value:
    return b.emit(Mul(), x, x)


_EXPANSIONS: dict[float, Callable[[Builder, Value], Value]] = {
    1.0: lambda b, x: x,
    2.0: _square,
    3.0: lambda b, x: b.emit(Mul(), _square(b, x), x),
    4.0: lambda b, x: _square(b, _square(b, x)),
    0.5: lambda b, x: b.emit(Sqrt(), x),
    -1.0: lambda b, x: b.emit(Reciprocal(), x),
}


@graph_pass("strength-reduce")
def strength_reduce(g: Graph) -> Graph:
    def reduce(b: Builder, node: Node) -> Value | None:
        if not isinstance(node.op, Pow):
            return None
        x, exponent = node.inputs
        c = b.const_value(exponent)
        if c is None or c.size == 0 or not x.type.dtype.is_float or x.type != node.outputs[0].type:
            return None
        values = np.unique(c)
        expand = _EXPANSIONS.get(float(values[0])) if values.size == 1 else None
        return None if expand is None else expand(b, x)

    return rewrite(g, reduce)
