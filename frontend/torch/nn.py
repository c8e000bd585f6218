"""Converters for neural-network ops: scaled_dot_product_attention, layer_norm, softmax,
log_softmax, batch norm (inference) and dropout."""

from __future__ import annotations

import math
from typing import Any

import torch

from ember.errors import UnsupportedError
from ember.frontend.torch.context import Context
from ember.frontend.torch.elementwise import binary
from ember.frontend.torch.linalg import transposed
from ember.frontend.torch.registry import converter
from ember.ir import DType, Value
from ember.ir.ops import UNARY_OPS, Arange, Expand, LayerNorm, LogSoftmax, MatMul, Softmax, Where
from ember.ir.ops._shapes import norm_axis

aten = torch.ops.aten


@converter(aten._softmax.default, aten.softmax.int)
def _softmax(cx: Context, x: Value, dim: int, half_to_float: Any = False) -> Value:
    x = cx.cast(x, cx.out_dtype())
    return cx.emit(Softmax(norm_axis("softmax", dim, x.type.rank)), x)


@converter(aten._log_softmax.default, aten.log_softmax.int)
def _log_softmax(cx: Context, x: Value, dim: int, half_to_float: Any = False) -> Value:
    x = cx.cast(x, cx.out_dtype())
    return cx.emit(LogSoftmax(norm_axis("log_softmax", dim, x.type.rank)), x)


@converter(aten.layer_norm.default)
def _layer_norm(
    cx: Context, x: Value, shape: list[Any], weight: Value | None = None,
    bias: Value | None = None, eps: float = 1e-5, cudnn_enable: bool = True,
) -> Value:  # fmt: skip
    normalized = tuple(cx.dim(d) for d in shape)
    dtype = x.type.dtype
    if weight is None:
        weight = cx.emit(Expand(normalized), cx.const(1.0, dtype))
    if bias is None:
        bias = cx.emit(Expand(normalized), cx.const(0.0, dtype))
    return cx.emit(
        LayerNorm(-len(normalized), eps), x, cx.cast(weight, dtype), cx.cast(bias, dtype)
    )


@converter(aten._native_batch_norm_legit_no_training.default)
def _batch_norm(
    cx: Context, x: Value, weight: Value | None, bias: Value | None, mean: Value, var: Value,
    momentum: float, eps: float,
) -> tuple[Value, Value, Value]:  # fmt: skip
    """Inference batch norm over axis 1: (x - mean) / sqrt(var + eps) * weight + bias."""
    channels = (1, x.type.shape[1]) + (1,) * (x.type.rank - 2)
    scale = cx.emit(UNARY_OPS["rsqrt"](), binary(cx, "add", var, eps))
    if weight is not None:
        scale = binary(cx, "mul", scale, weight)
    out = binary(
        cx, "mul", binary(cx, "sub", x, cx.reshape(mean, channels)), cx.reshape(scale, channels)
    )
    if bias is not None:
        out = binary(cx, "add", out, cx.reshape(bias, channels))
    return out, mean, var


def _repeat_heads(cx: Context, kv: Value, groups: int) -> Value:
    """(..., Hkv, S, E) -> (..., Hkv * groups, S, E), each head repeated `groups` times."""
    *lead, heads, seq, dim = kv.type.shape
    spread = cx.emit(
        Expand((*lead, heads, groups, seq, dim)), cx.reshape(kv, (*lead, heads, 1, seq, dim))
    )
    return cx.reshape(spread, (*lead, heads * groups, seq, dim))


def _causal_mask(cx: Context, rows: Any, cols: Any) -> Value:
    """(L, S) bool, true where column <= row (torch's top-left aligned tril)."""
    i = cx.reshape(cx.emit(Arange(0, rows, 1, DType.int64)), (rows, 1))
    j = cx.reshape(cx.emit(Arange(0, cols, 1, DType.int64)), (1, cols))
    return binary(cx, "less_equal", j, i)


@converter(aten.scaled_dot_product_attention.default)
def _sdpa(
    cx: Context, q: Value, k: Value, v: Value, attn_mask: Value | None = None,
    dropout_p: float = 0.0, is_causal: bool = False, *, scale: float | None = None,
    enable_gqa: bool = False,
) -> Value:  # fmt: skip
    """softmax(q @ k^T * scale + mask) @ v, with grouped-query heads repeated to match q."""
    if dropout_p:
        raise UnsupportedError(f"attention dropout_p={dropout_p} (call model.eval())")
    heads, kv_heads = (
        q.type.shape[-3] if q.type.rank > 2 else 1,
        k.type.shape[-3] if k.type.rank > 2 else 1,
    )
    if enable_gqa and heads != kv_heads:
        k, v = (
            _repeat_heads(cx, k, int(heads // kv_heads)),
            _repeat_heads(cx, v, int(heads // kv_heads)),
        )
    scale = 1.0 / math.sqrt(int(q.type.shape[-1])) if scale is None else scale
    scores = binary(cx, "mul", cx.emit(MatMul(), q, transposed(cx, k)), scale)
    rows, cols = scores.type.shape[-2], scores.type.shape[-1]
    masks = [attn_mask] if attn_mask is not None else []
    if is_causal:
        masks.append(_causal_mask(cx, rows, cols))
    for mask in masks:
        if mask.type.dtype is DType.bool:
            scores = cx.emit(Where(), mask, scores, cx.const(float("-inf"), scores.type.dtype))
        else:
            scores = binary(cx, "add", scores, cx.cast(mask, scores.type.dtype))
    return cx.emit(MatMul(), cx.emit(Softmax(-1), scores), v)


@converter(aten.native_dropout.default)
def _native_dropout(cx: Context, x: Value, p: float, train: bool | None) -> tuple[Value, Value]:
    if train:
        raise UnsupportedError("dropout in training mode (call model.eval())")
    return x, cx.emit(Expand(x.type.shape), cx.const(True, DType.bool))
