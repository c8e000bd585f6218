"""The small graphs whose kernels train and evaluate ember's cost model.

Families cover what models run: dense layers (weights constant, so ember packs them) with and
without epilogues, matmuls of two inputs, batch matmuls, attention scores with softmax, 2-D
convolutions (dense, pointwise, strided, depthwise), softmax, layer norm, elementwise chains,
transposes and reductions, at shapes from GEMV to 256x1024x256. About a quarter of them, at least
one per family, are held out: their kernels are never trained on and score the model's rankings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ember.ir import Builder, Graph, Value
from ember.ir.ops import (
    Add,
    Conv,
    Gelu,
    LayerNorm,
    MatMul,
    Mul,
    ReduceMax,
    ReduceMean,
    ReduceSum,
    Relu,
    Sigmoid,
    Softmax,
    Transpose,
)

__all__ = ["WORKLOADS", "Workload"]


@dataclass(frozen=True)
class Workload:
    """A named graph factory; `held_out` kernels are for evaluation only."""

    name: str
    family: str
    held_out: bool
    graph: Callable[[], Graph]


def _weight(b: Builder, shape: tuple[int, ...]) -> Value:
    rng = np.random.default_rng(len(shape) + sum(shape))
    return b.const(rng.standard_normal(shape).astype(np.float32) * 0.1)


def _dense(m: int, k: int, n: int, epilogue: bool = False) -> Callable[[], Graph]:
    def graph() -> Graph:
        b = Builder(f"dense_{m}x{k}x{n}")
        y = b.emit(MatMul(), b.input((m, k), name="x"), _weight(b, (k, n)))
        if epilogue:
            y = b.emit(Gelu(), b.emit(Add(), y, _weight(b, (n,))))
        b.output(y)
        return b.build()

    return graph


def _matmul(*shape: int) -> Callable[[], Graph]:
    """Two inputs: [..., m, k] @ [..., k, n] (batch dims first)."""

    def graph() -> Graph:
        *batch, m, k, n = shape
        b = Builder("matmul_" + "x".join(map(str, shape)))
        y = b.emit(MatMul(), b.input((*batch, m, k), name="a"), b.input((*batch, k, n), name="b"))
        b.output(y)
        return b.build()

    return graph


def _attention(batch: int, heads: int, seq: int, dim: int) -> Callable[[], Graph]:
    """softmax(q @ k^T * scale): the score half of attention."""

    def graph() -> Graph:
        b = Builder(f"attention_{batch}x{heads}x{seq}x{dim}")
        q = b.input((batch, heads, seq, dim), name="q")
        k = b.input((batch, heads, dim, seq), name="kt")
        scores = b.emit(Mul(), b.emit(MatMul(), q, k), b.const(np.float32(dim**-0.5)))
        b.output(b.emit(Softmax(-1), scores))
        return b.build()

    return graph


def _conv(n: int, c: int, hw: int, m: int, kernel: int, stride: int = 1,
          groups: int = 1) -> Callable[[], Graph]:  # fmt: skip
    def graph() -> Graph:
        b = Builder(f"conv_{n}x{c}x{hw}_{m}k{kernel}s{stride}g{groups}")
        x = b.input((n, c, hw, hw), name="x")
        pad = kernel // 2
        conv = Conv((stride, stride), (pad, pad, pad, pad), (1, 1), groups)
        b.output(b.emit(Relu(), b.emit(conv, x, _weight(b, (m, c // groups, kernel, kernel)))))
        return b.build()

    return graph


def _softmax(*shape: int) -> Callable[[], Graph]:
    def graph() -> Graph:
        b = Builder("softmax_" + "x".join(map(str, shape)))
        b.output(b.emit(Softmax(-1), b.input(shape, name="x")))
        return b.build()

    return graph


def _layer_norm(rows: int, cols: int) -> Callable[[], Graph]:
    def graph() -> Graph:
        b = Builder(f"layer_norm_{rows}x{cols}")
        x = b.input((rows, cols), name="x")
        b.output(b.emit(LayerNorm(-1), x, _weight(b, (cols,)), _weight(b, (cols,))))
        return b.build()

    return graph


def _elementwise(kind: str, *shape: int) -> Callable[[], Graph]:
    def graph() -> Graph:
        b = Builder(f"{kind}_" + "x".join(map(str, shape)))
        x, y = b.input(shape, name="x"), b.input(shape, name="y")
        if kind == "add_relu":
            out = b.emit(Relu(), b.emit(Add(), x, y))
        elif kind == "swish_mul":
            out = b.emit(Mul(), b.emit(Mul(), x, b.emit(Sigmoid(), x)), y)
        elif kind == "gelu_add":
            out = b.emit(Add(), b.emit(Gelu(), x), y)
        else:
            out = b.emit(Transpose((0, 2, 1)), b.emit(Add(), x, y))
        b.output(out)
        return b.build()

    return graph


def _reduce(kind: str, axes: tuple[int, ...], *shape: int) -> Callable[[], Graph]:
    op = {"sum": ReduceSum, "mean": ReduceMean, "max": ReduceMax}[kind]

    def graph() -> Graph:
        b = Builder(f"reduce_{kind}_" + "x".join(map(str, shape)))
        b.output(b.emit(op(axes), b.input(shape, name="x")))
        return b.build()

    return graph


def _w(name: str, family: str, graph: Callable[[], Graph], held_out: bool = False) -> Workload:
    return Workload(name, family, held_out, graph)


WORKLOADS: tuple[Workload, ...] = (
    _w("dense_64x256x256", "dense", _dense(64, 256, 256)),
    _w("dense_256x256x256", "dense", _dense(256, 256, 256), held_out=True),
    _w("dense_128x512x256", "dense", _dense(128, 512, 256)),
    _w("dense_32x768x768", "dense", _dense(32, 768, 768)),
    _w("dense_96x384x192", "dense", _dense(96, 384, 192), held_out=True),
    _w("dense_128x128x512", "dense", _dense(128, 128, 512)),
    _w("dense_16x1024x256", "dense", _dense(16, 1024, 256)),
    _w("dense_1x512x512", "dense", _dense(1, 512, 512)),
    _w("dense_1x768x256", "dense", _dense(1, 768, 256), held_out=True),
    _w("dense_512x64x128", "dense", _dense(512, 64, 128)),
    _w("dense_200x300x100", "dense", _dense(200, 300, 100)),
    _w("dense_64x64x64", "dense", _dense(64, 64, 64)),
    _w("dense_256x1024x256", "dense", _dense(256, 1024, 256)),
    _w("dense_gelu_128x256x512", "dense", _dense(128, 256, 512, epilogue=True)),
    _w("dense_gelu_64x512x128", "dense", _dense(64, 512, 128, epilogue=True), held_out=True),
    _w("matmul_128x256x128", "matmul", _matmul(128, 256, 128)),
    _w("matmul_192x128x320", "matmul", _matmul(192, 128, 320), held_out=True),
    _w("matmul_64x128x256", "matmul", _matmul(64, 128, 256)),
    _w("bmm_4x64x64x64", "batch_matmul", _matmul(4, 64, 64, 64)),
    _w("bmm_8x128x64x128", "batch_matmul", _matmul(8, 128, 64, 128), held_out=True),
    _w("bmm_12x32x32x64", "batch_matmul", _matmul(12, 32, 32, 64)),
    _w("bmm_2x256x64x128", "batch_matmul", _matmul(2, 256, 64, 128)),
    _w("attention_1x4x64x32", "attention", _attention(1, 4, 64, 32)),
    _w("attention_1x8x96x32", "attention", _attention(1, 8, 96, 32), held_out=True),
    _w("attention_2x2x128x64", "attention", _attention(2, 2, 128, 64)),
    _w("conv_1x32x28_64k3", "conv2d", _conv(1, 32, 28, 64, 3)),
    _w("conv_1x16x56_32k3", "conv2d", _conv(1, 16, 56, 32, 3), held_out=True),
    _w("conv_1x64x14_64k1", "conv2d", _conv(1, 64, 14, 64, 1)),
    _w("conv_2x8x32_16k5", "conv2d", _conv(2, 8, 32, 16, 5)),
    _w("conv_1x3x64_16k3s2", "conv2d", _conv(1, 3, 64, 16, 3, stride=2)),
    _w("conv_dw_1x32x28", "conv2d", _conv(1, 32, 28, 32, 3, groups=32)),
    _w("softmax_64x256", "softmax", _softmax(64, 256)),
    _w("softmax_128x1024", "softmax", _softmax(128, 1024), held_out=True),
    _w("softmax_8x4x64x64", "softmax", _softmax(8, 4, 64, 64)),
    _w("softmax_512x128", "softmax", _softmax(512, 128)),
    _w("layer_norm_128x256", "layer_norm", _layer_norm(128, 256)),
    _w("layer_norm_64x768", "layer_norm", _layer_norm(64, 768), held_out=True),
    _w("layer_norm_512x128", "layer_norm", _layer_norm(512, 128)),
    _w("layer_norm_32x1024", "layer_norm", _layer_norm(32, 1024)),
    _w("add_relu_256x1024", "elementwise", _elementwise("add_relu", 256, 1024)),
    _w("swish_mul_64x64x64", "elementwise", _elementwise("swish_mul", 64, 64, 64)),
    _w("gelu_add_512x512", "elementwise", _elementwise("gelu_add", 512, 512), held_out=True),
    _w("add_transpose_64x128x32", "elementwise", _elementwise("add_transpose", 64, 128, 32)),
    _w("reduce_sum_256x512", "reduction", _reduce("sum", (1,), 256, 512)),
    _w("reduce_max_32x128x64", "reduction", _reduce("max", (1,), 32, 128, 64)),
    _w("reduce_mean_1024x256", "reduction", _reduce("mean", (1,), 1024, 256), held_out=True),
    _w("reduce_mean_16x64x64", "reduction", _reduce("mean", (1, 2), 16, 64, 64)),
)
