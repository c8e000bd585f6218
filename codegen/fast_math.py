"""Fast math: float32 `exp`, `erf`, `tanh` and `sigmoid` calls in TIR => vectorizable polynomials.

LLVM lowers these intrinsics to scalar libm calls, so a loop that contains one never vectorizes
(softmax, gelu, silu spend most of their time there). The replacements are plain arithmetic:

    exp:  Cody-Waite range reduction x = n ln2 + r, a degree-7 polynomial for e^r (Cephes'
          expf), and 2^n applied as two exponent-bit factors so results that overflow to inf
          round like libm's. Relative error < 1e-6. Results below float32's smallest normal
          (x < -87.33) are 0, as under FTZ: subnormal arithmetic is ~100x slower on x86.
    erf:  Eigen's rational approximation on [-3.83, 3.83], ±1 outside. Absolute error < 1e-6.
    tanh: Eigen's rational approximation on [-9, 9], ±1 outside. Absolute error < 1e-6.
    sigmoid(x) = 1 / (1 + exp(-x)) with the fast exp.

Special values are exact: exp(-inf) = 0, exp(+inf) = inf, erf/tanh(±inf) = ±1, and nan stays nan
(a select around each formula; a blend costs one instruction per vector).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tvm
import tvm_ffi
from tvm import tirx

__all__ = ["fast_math"]

_F32 = "float32"

# Cephes expf: e^r ~ 1 + r + r^2 * P(r) for |r| <= ln2/2; ln2 split so n * _LN2_HI is exact.
_EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
             5.0000001201e-1)  # fmt: skip
_LN2_HI, _LN2_LO = 0.693359375, -2.12194440e-4
_LOG2E = 1.44269504088896341
# Above 89 e^x overflows to inf: clamping there keeps the exponent arithmetic in range while the
# two scale factors still produce inf. Below -87.33, e^x is under float32's smallest normal
# (2^-126) and flushes to 0, as under FTZ: computing those denormals traps into microcode on x86
# (about 100x slower), and softmax over a causal mask meets them in every masked entry.
_EXP_MIN, _EXP_MAX = -87.33, 89.0

# Eigen's generic_fast_erf_float: erf(x) = x P(x^2) / Q(x^2) where erf(x) does not round to ±1.
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
          -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
          -1.60960333262415e-02)  # fmt: skip
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
          -7.37332916720468e-03, -1.42647390514189e-02)  # fmt: skip
_ERF_SATURATE = 3.832506856900711  # erf rounds to 1 in float32 beyond (Eigen's bound)

# Eigen's generic_fast_tanh_float: tanh(x) = x P(x^2) / Q(x^2) on [-9, 9].
_TANH_P = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
           5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
           4.89352455891786e-03)  # fmt: skip
_TANH_Q = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
           4.89352518554385e-03)  # fmt: skip
_TANH_SATURATE = 9.0


def _f(value: float) -> Any:
    return tirx.const(value, _F32)


def _horner(x: Any, coeffs: Sequence[float]) -> Any:
    acc = _f(coeffs[0])
    for c in coeffs[1:]:
        acc = acc * x + _f(c)
    return acc


def _bind(value: Any, body: Callable[[Any], Any]) -> Any:
    """`body(v)` with `value` computed once (a Let), since the formulas read it many times."""
    var = tirx.Var("fm", _F32)
    return tirx.Let(var, value, body(var))


def _keep_nan(v: Any, result: Any) -> Any:
    # |v| <= inf is false only for NaN (an ordered float compare, vectorized like any other). Not
    # tirx.isnan(v): TVM's vectorizer cannot vectorize that call, so it scalarized the whole loop
    # (which LLVM re-vectorized only 8 wide on AVX-512); and not v != v, which TVM's simplifier
    # folds to false.
    return tirx.Select(tirx.abs(v) <= _f(float("inf")), result, v)


def _pow2(n: Any) -> Any:
    """2^n for an int32 n in [-126, 127], built from its exponent bits."""
    return tirx.reinterpret(_F32, tirx.shift_left(n + tirx.const(127, "int32"), 23))


def fast_exp(x: Any) -> Any:
    """e^x as a float32 TIR expression."""

    def body(v: Any) -> Any:
        clamped = tirx.min(tirx.max(v, _f(_EXP_MIN)), _f(_EXP_MAX))
        n = tirx.floor(clamped * _f(_LOG2E) + _f(0.5))
        reduced = clamped - n * _f(_LN2_HI) - n * _f(_LN2_LO)

        def poly(r: Any) -> Any:
            return _horner(r, _EXP_POLY) * r * r + r + _f(1.0)

        exponent = n.astype("int32")
        half = tirx.shift_right(exponent, 1)  # floor(n / 2): both factors stay normal
        scaled = _bind(reduced, poly) * _pow2(half) * _pow2(exponent - half)
        return _keep_nan(v, tirx.Select(v < _f(_EXP_MIN), _f(0.0), scaled))

    return _bind(x, body)


def _odd_rational(p: Sequence[float], q: Sequence[float], saturate: float) -> Callable[[Any], Any]:
    """x P(x^2) / Q(x^2) inside [-saturate, saturate], ±1 outside (erf and tanh)."""

    def build(x: Any) -> Any:
        def body(v: Any) -> Any:
            def ratio(x2: Any) -> Any:
                return v * _horner(x2, p) / _horner(x2, q)

            sign = tirx.Select(v > _f(0.0), _f(1.0), _f(-1.0))
            inside = tirx.abs(v) < _f(saturate)
            return _keep_nan(v, tirx.Select(inside, _bind(v * v, ratio), sign))

        return _bind(x, body)

    return build


def fast_sigmoid(x: Any) -> Any:
    """1 / (1 + e^-x) with the fast exp: sigmoid(-inf) = 0, sigmoid(inf) = 1."""
    return _f(1.0) / (_f(1.0) + fast_exp(-x))


_FAST: dict[str, Callable[[Any], Any]] = {
    "tirx.exp": fast_exp,
    "tirx.erf": _odd_rational(_ERF_P, _ERF_Q, _ERF_SATURATE),
    "tirx.tanh": _odd_rational(_TANH_P, _TANH_Q, _TANH_SATURATE),
    "tirx.sigmoid": fast_sigmoid,
}


def _rewrite_call(call: Any) -> Any:
    if str(call.ty) != _F32 or not isinstance(call.op, tvm.ir.Op) or len(call.args) != 1:
        return call
    fast = _FAST.get(call.op.name)
    return call if fast is None else fast(call.args[0])


def fast_math(mod: tvm.IRModule) -> tvm.IRModule:
    """Replace float32 exp/erf/tanh/sigmoid calls in every PrimFunc of `mod` (a new module)."""
    functions = {}
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc):
            func = tvm_ffi.structural_map(func, [(tvm.ir.Call, _rewrite_call)])
        functions[gv] = func
    return tvm.IRModule(functions, attrs=mod.attrs)
