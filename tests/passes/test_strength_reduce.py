from __future__ import annotations

import numpy as np
import pytest

from ember.ir import Builder, Graph, Value, sym
from ember.ir.ops import Mul, Pow, Reciprocal, Sqrt, Tanh
from ember.passes.strength_reduce import strength_reduce
from tests.helpers import check_pass


def _graph(exponent: object, expand=None, *, dtype: str = "float32") -> Graph:
    """tanh(x ** exponent), or tanh(expand(b, x)) for the expected graph."""
    b = Builder()
    x = b.input((sym("n"), 8), dtype, name="x")
    y = expand(b, x) if expand else b.emit(Pow(), x, b.const(np.asarray(exponent, dtype)))
    b.output(b.emit(Tanh(), y) if dtype.startswith("float") else y)
    return b.build()


def _square(b: Builder, x: Value) -> Value:
    return b.emit(Mul(), x, x)


@pytest.mark.parametrize(
    ("exponent", "expand"),
    [
        (1.0, lambda b, x: x),
        (2.0, _square),
        (3.0, lambda b, x: b.emit(Mul(), _square(b, x), x)),
        ([4.0] * 8, lambda b, x: _square(b, _square(b, x))),  # a uniform vector exponent
        (0.5, lambda b, x: b.emit(Sqrt(), x)),
        (-1.0, lambda b, x: b.emit(Reciprocal(), x)),
    ],
)
def test_constant_exponents_become_arithmetic(exponent, expand):
    check_pass(strength_reduce, before=_graph(exponent), expected=_graph(exponent, expand))


@pytest.mark.parametrize("exponent", [2.5, [2.0, 3.0] * 4])
def test_other_exponents_keep_pow(exponent):
    check_pass(strength_reduce, before=_graph(exponent), expected=_graph(exponent))


def test_integer_pow_is_kept():
    check_pass(strength_reduce, before=_graph(2, dtype="int32"), expected=_graph(2, dtype="int32"))


def test_broadcasting_exponent_is_kept():
    b = Builder()
    x = b.input((8,), "float32", name="x")
    b.output(b.emit(Pow(), x, b.const(np.full((2, 8), 2.0, np.float32))))
    g = b.build()
    check_pass(strength_reduce, before=g, expected=g)
