"""Shared test helpers: per-dtype tolerances, and building one op's TE compute for CPU."""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.ir import Op, TensorType

__all__ = ["TOLERANCES", "assert_close", "run_compute"]

TOLERANCES: dict[str, tuple[float, float]] = {  # dtype: (rtol, atol)
    "float64": (1e-7, 1e-9),
    "float32": (1e-5, 1e-5),
    "float16": (1e-2, 1e-2),
    "bfloat16": (2e-2, 2e-2),
}

CPU = {"kind": "llvm", "mcpu": "sapphirerapids"}


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    """Exact for ints and bools, else the tolerance of expected's dtype."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}"
    rtol, atol = TOLERANCES.get(expected.dtype.name, (0.0, 0.0))
    np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol)


def run_compute(op: Op, *arrays: np.ndarray) -> list[np.ndarray]:
    """Build `op.compute` for llvm on the arrays' (static) shapes and run it."""
    import tvm
    from tvm import te

    placeholders = [te.placeholder(a.shape, str(a.dtype), name=f"in{i}") for i, a in enumerate(arrays)]
    result: Any = op.compute(*placeholders)
    outs = list(result) if isinstance(result, tuple | list) else [result]
    lib = tvm.compile(te.create_prim_func([*placeholders, *outs]), target=CPU)
    types = op.infer(*(TensorType(a.shape, a.dtype) for a in arrays))
    types = types if isinstance(types, tuple) else (types,)
    out_arrays = [tvm.runtime.tensor(np.zeros([int(d) for d in t.shape], t.dtype.numpy)) for t in types]
    lib(*(tvm.runtime.tensor(a) for a in arrays), *out_arrays)
    return [o.numpy() for o in out_arrays]
