"""Element types, symbolic dimensions and `TensorType`, the type of every IR value."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import sympy

from ember.errors import ShapeError

__all__ = ["DType", "Dim", "TensorType", "dim_str", "sym"]

Dim = int | sympy.Expr


class DType(enum.Enum):
    """Element types. `int4` is two values packed per uint8 byte; bfloat16, the fp8/fp4 types and
    uint4/int2/uint2 (one value per byte) use ml_dtypes."""

    float64 = "float64"
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"
    float8_e4m3fn = "float8_e4m3fn"
    float8_e5m2 = "float8_e5m2"
    float8_e4m3fnuz = "float8_e4m3fnuz"
    float8_e5m2fnuz = "float8_e5m2fnuz"
    float4_e2m1fn = "float4_e2m1fn"
    int64 = "int64"
    int32 = "int32"
    int16 = "int16"
    int8 = "int8"
    int4 = "int4"
    uint8 = "uint8"
    uint16 = "uint16"
    uint32 = "uint32"
    uint64 = "uint64"
    uint4 = "uint4"  # one value per byte, like ONNX's (ml_dtypes); unlike the packed `int4`
    int2 = "int2"
    uint2 = "uint2"
    bool = "bool"

    @classmethod
    def of(cls, value: object) -> DType:
        """The DType named by a string, numpy dtype or DType."""
        if isinstance(value, DType):
            return value
        name = np.dtype(value).name if not isinstance(value, str) else value
        try:
            return cls(_ALIASES.get(name, name))
        except ValueError:
            raise ShapeError(
                f"unknown dtype {value!r}; ember knows {[d.value for d in cls]}"
            ) from None

    @property
    def short(self) -> str:
        return _SHORT[self]

    @property
    def is_float(self) -> bool:
        return self.value.startswith(("float", "bfloat"))

    @property
    def is_int(self) -> bool:
        return self.value.startswith(("int", "uint"))

    @property
    def is_signed(self) -> bool:
        return not self.value.startswith(("uint", "bool"))

    @cached_property
    def numpy(self) -> np.dtype:
        """The numpy dtype holding one element (see the class docstring)."""
        if self in _ML_DTYPES:
            import ml_dtypes

            return np.dtype(getattr(ml_dtypes, self.value))
        if self is DType.int4:
            return np.dtype("uint8")  # packed: two nibbles per byte
        return np.dtype(self.value)

    @property
    def tvm(self) -> str:
        """The dtype string TVM uses."""
        return "bool" if self is DType.bool else self.value


_ML_DTYPES = frozenset(
    {DType.bfloat16, DType.float8_e4m3fn, DType.float8_e5m2, DType.float8_e4m3fnuz,
     DType.float8_e5m2fnuz, DType.float4_e2m1fn, DType.uint4, DType.int2, DType.uint2}
)  # fmt: skip
_ALIASES = {
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "long": "int64",
    "int": "int32",
}
_SHORT = {
    DType.float64: "f64", DType.float32: "f32", DType.float16: "f16", DType.bfloat16: "bf16",
    DType.float8_e4m3fn: "f8e4m3", DType.float8_e5m2: "f8e5m2", DType.int64: "i64",
    DType.int32: "i32", DType.int16: "i16", DType.int8: "i8", DType.int4: "i4", DType.uint8: "u8",
    DType.uint16: "u16", DType.uint32: "u32", DType.uint64: "u64", DType.bool: "bool",
    DType.float8_e4m3fnuz: "f8e4m3fnuz", DType.float8_e5m2fnuz: "f8e5m2fnuz",
    DType.float4_e2m1fn: "f4e2m1", DType.uint4: "u4", DType.int2: "i2", DType.uint2: "u2",
}  # fmt: skip


def sym(name: str) -> sympy.Symbol:
    """A symbolic dimension: a positive integer named `name`."""
    return sympy.Symbol(name, integer=True, positive=True)


def dim_str(d: Dim) -> str:
    return str(d).replace(" ", "")


def _normalize(d: object) -> Dim:
    if isinstance(d, sympy.Expr):
        return int(d) if d.is_Integer else d
    if isinstance(d, int | np.integer) and not isinstance(d, bool):
        if d < 0:
            raise ShapeError(f"negative dimension {d}")
        return int(d)
    raise ShapeError(f"a dimension must be an int or a sympy expression, got {d!r}")


@dataclass(frozen=True)
class TensorType:
    """A tensor's shape (ints and sympy expressions) and element type."""

    shape: tuple[Dim, ...]
    dtype: DType

    def __init__(self, shape: object, dtype: object) -> None:
        object.__setattr__(self, "shape", tuple(_normalize(d) for d in shape))  # type: ignore[union-attr]
        object.__setattr__(self, "dtype", DType.of(dtype))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    @property
    def numel(self) -> Dim:
        return (
            sympy.Mul(*self.shape)
            if not self.is_static
            else int(np.prod(self.shape, dtype=np.int64))
        )

    @property
    def symbols(self) -> frozenset[sympy.Symbol]:
        found: set[sympy.Symbol] = set()
        for d in self.shape:
            if isinstance(d, sympy.Expr):
                found |= d.free_symbols  # type: ignore[arg-type]
        return frozenset(found)

    def with_shape(self, shape: object) -> TensorType:
        return TensorType(shape, self.dtype)

    def with_dtype(self, dtype: object) -> TensorType:
        return TensorType(self.shape, dtype)

    def __str__(self) -> str:
        return f"{self.dtype.short}[{','.join(dim_str(d) for d in self.shape)}]"
