"""torch dtypes <-> ember DTypes, torch tensors -> numpy, and torch's type-promotion rule."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ember.errors import UnsupportedError
from ember.ir import DType

__all__ = ["promote", "to_dtype", "to_numpy"]

_DTYPES: dict[torch.dtype, DType] = {
    torch.float64: DType.float64,
    torch.float32: DType.float32,
    torch.float16: DType.float16,
    torch.bfloat16: DType.bfloat16,
    torch.float8_e4m3fn: DType.float8_e4m3fn,
    torch.float8_e5m2: DType.float8_e5m2,
    torch.int64: DType.int64,
    torch.int32: DType.int32,
    torch.int16: DType.int16,
    torch.int8: DType.int8,
    torch.uint8: DType.uint8,
    torch.uint16: DType.uint16,
    torch.uint32: DType.uint32,
    torch.uint64: DType.uint64,
    torch.bool: DType.bool,
}
_TORCH = {v: k for k, v in _DTYPES.items()}


def to_dtype(dtype: torch.dtype) -> DType:
    """The ember DType of a torch dtype."""
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise UnsupportedError(f"torch dtype {dtype} has no ember equivalent") from None


def to_torch(dtype: DType) -> torch.dtype:
    return _TORCH[dtype]


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A numpy copy of a (possibly bf16/fp8) tensor, bit-exact."""
    t = t.detach().cpu().contiguous()
    dtype = to_dtype(t.dtype)
    if dtype in (DType.bfloat16, DType.float8_e4m3fn, DType.float8_e5m2):
        raw = t.view(torch.int16 if dtype is DType.bfloat16 else torch.uint8).numpy()
        return raw.view(dtype.numpy).copy()
    return t.numpy().copy()


def promote(*operands: Any) -> DType:
    """torch.result_type over tensors (given as (DType, rank)) and Python scalars.

    Rank matters: a 0-d tensor takes part in promotion like a scalar of its category.
    """
    probes = [
        torch.empty((1,) * min(op[1], 1), dtype=_TORCH[op[0]]) if isinstance(op, tuple) else op
        for op in operands
    ]
    result = probes[0]
    for other in probes[1:]:
        dtype = torch.result_type(result, other)
        result = torch.empty((1,) * max(_rank(result), _rank(other)), dtype=dtype)
    return to_dtype(result.dtype if isinstance(result, torch.Tensor) else _scalar_dtype(result))


def _rank(x: Any) -> int:
    return min(x.dim(), 1) if isinstance(x, torch.Tensor) else -1


def _scalar_dtype(x: Any) -> torch.dtype:
    if isinstance(x, bool):
        return torch.bool
    return torch.int64 if isinstance(x, int) else torch.get_default_dtype()
