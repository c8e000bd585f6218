"""fuse-quantize: producer (RMSNorm, LayerNorm, SiLU gating) + quantize_rows => one
fused_quantize_rows, equal to the unfused ops.

Tolerance: the fused op's reference is the composition of the unfused references, so the
interpreter's results are bitwise equal. Built kernels may sum a row in another order than the
unfused kernels, so a level may flip where x / scale sits on a rounding boundary: codes differ by
at most one level in at most 0.1% of the elements, scales by at most 1e-5 relative (in practice
they are bitwise equal too).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ember
from ember.codegen.build import build
from ember.ir import Builder, Graph, interpret
from ember.ir.ops import (
    BINARY_OPS,
    UNARY_OPS,
    Gather,
    LayerNorm,
    Pad,
    QuantizeRows,
    ReduceMean,
    Reshape,
    Slice,
)
from ember.passes import PASSES
from ember.runtime import Executor
from tests.helpers import run_exported

TARGET = {"kind": "llvm", "mcpu": "sapphirerapids", "num-cores": 2}
K = 256


def _producer(b: Builder, name: str, rng: np.random.Generator):
    """The producer as frontends emit it, on x[2, 8, K]; its output reshaped to rows."""
    mul = BINARY_OPS["mul"]()
    x = b.input((2, 8, K), "float32", "x")
    vector = b.const(rng.standard_normal(K).astype(np.float32))
    if name == "rms_norm":
        mean = b.emit(ReduceMean((2,), True), b.emit(mul, x, x))
        eps = b.emit(BINARY_OPS["add"](), mean, b.const(np.float32(1e-6)))
        y = b.emit(mul, vector, b.emit(mul, x, b.emit(UNARY_OPS["rsqrt"](), eps)))
    elif name == "layer_norm":
        bias = b.const(rng.standard_normal(K).astype(np.float32))
        y = b.emit(LayerNorm(-1, 1e-5), x, vector, bias)
    else:
        up = b.input((2, 8, K), "float32", "up")
        y = b.emit(mul, b.emit(UNARY_OPS["silu"](), x), up)
    return b.emit(Reshape((-1, K)), y)


def _graph(name: str) -> Graph:
    """Every head kind the quantization passes emit: SmoothQuant's multiplier (W8A8), Atom's
    reordered int4 channels padded to whole groups and int8 outliers, a slice of groups."""
    rng = np.random.default_rng(0)
    b = Builder()
    rows = _producer(b, name, rng)
    columns = rng.permutation(K)
    smooth = b.const((1 / rng.uniform(0.5, 2, K)).astype(np.float32))
    if name == "silu_mul":  # Atom's order arrives folded into gate and up: ranges
        int4 = b.emit(Pad((0, 0, 0, 64)), b.emit(Slice((1,), (0,), (192,), (1,)), rows))
        outliers = b.emit(Slice((1,), (192,), (256,), (1,)), rows)
    else:
        int4 = b.emit(Pad((0, 0, 0, 64)), b.emit(Gather(axis=1), rows, b.const(columns[:192])))
        outliers = b.emit(Gather(axis=1), rows, b.const(columns[192:]))
    groups = b.emit(Slice((1,), (64,), (192,), (1,)), rows)
    b.output(
        *b.emit_multi(QuantizeRows(8), rows, smooth),
        *b.emit_multi(QuantizeRows(4, 128), int4),
        *b.emit_multi(QuantizeRows(8), outliers),
        *b.emit_multi(QuantizeRows(4, 64), groups),
    )
    return b.build()


def _inputs(g: Graph) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [3 * rng.standard_normal((2, 8, K)).astype(np.float32) for _ in g.inputs]


def _run(g: Graph, inputs: list[np.ndarray]) -> list[np.ndarray]:
    result = build(g, TARGET)
    outputs = Executor(result.executable, target=result.target).run(inputs)
    return [np.asarray(o.numpy()) for o in outputs]


def _assert_close(actual: list[np.ndarray], expected: list[np.ndarray]) -> None:
    for a, e in zip(actual, expected, strict=True):
        assert a.dtype == e.dtype
        assert a.shape == e.shape
        if a.dtype == np.uint8:
            diff = np.abs(a.astype(np.int32) - e.astype(np.int32))
            assert diff.max() <= 1
            assert (diff > 0).mean() <= 1e-3
        else:
            np.testing.assert_allclose(a, e, rtol=1e-5)


@pytest.mark.parametrize("producer", ["rms_norm", "layer_norm", "silu_mul"])
def test_fused_kernel_equals_unfused(producer):
    g = _graph(producer)
    fused = PASSES["fuse-quantize"](g)
    ops = fused.op_histogram()
    assert ops.get("fused_quantize_rows") == 1
    assert "quantize_rows" not in ops
    inputs = _inputs(g)
    reference = interpret(g, *inputs)
    for a, e in zip(interpret(fused, *inputs), reference, strict=True):
        np.testing.assert_array_equal(a, e)
    _assert_close(_run(fused, inputs), _run(g, inputs))
    _assert_close(_run(fused, inputs), list(reference))


@pytest.mark.parametrize("producer", ["rms_norm", "silu_mul"])
def test_kernel_is_row_parallel_with_row_buffers(producer):
    """The scheduled kernel is one parallel loop over rows, and every intermediate buffer (row
    statistics, each head's row, partial maxima) is allocated inside it with one row."""
    import tvm
    from tvm import s_tir

    from ember.codegen.cpu_fused_quantize import FusedQuantize
    from ember.codegen.lower import to_relax

    target = tvm.target.Target(TARGET)
    with target:
        mod = to_relax(PASSES["fuse-quantize"](_graph(producer)))
    (func,) = (f for gv, f in mod.functions.items() if gv.name_hint == "fused_quantize_rows")
    sch = FusedQuantize().schedule(s_tir.Schedule(func), target)
    assert sch is not None
    lowered = s_tir.transform.LowerInitBlock()(sch.mod)
    lowered = s_tir.transform.PlanAndUpdateBufferAllocationLocation()(lowered)
    lowered = s_tir.transform.ConvertBlocksToOpaque()(lowered)
    text = s_tir.transform.CompactBufferAllocation()(lowered).script()
    body = text[text.index("T.parallel(T.int64(16))") :]
    allocations = [line for line in text.splitlines() if "alloc_buffer" in line]
    assert allocations
    assert all(line in body and "((T.int64(1)," in line for line in allocations)


def test_unfusable_producers_are_left_alone():
    """A norm whose output also feeds something else is written anyway; the SiLU gating's
    row block takes column ranges, not gathers."""
    rng = np.random.default_rng(0)
    b = Builder()
    rows = _producer(b, "rms_norm", rng)
    b.output(*b.emit_multi(QuantizeRows(8), rows), b.emit(UNARY_OPS["neg"](), rows))
    g = b.build()
    assert PASSES["fuse-quantize"](g) is g
    b = Builder()
    rows = _producer(b, "silu_mul", rng)
    b.output(*b.emit_multi(QuantizeRows(8), b.emit(Gather(axis=1), rows, b.const(np.arange(K)))))
    g = b.build()
    assert PASSES["fuse-quantize"](g) is g


class _Block(torch.nn.Module):
    """Llama's MLP half-block: RMSNorm, gate/up, SiLU gating, down."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = torch.nn.RMSNorm(128, eps=1e-6)
        self.gate = torch.nn.Linear(128, 256, bias=False)
        self.up = torch.nn.Linear(128, 256, bias=False)
        self.down = torch.nn.Linear(256, 128, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return x + self.down(torch.nn.functional.silu(self.gate(h)) * self.up(h))


@pytest.mark.parametrize("scheme", [pytest.param("w8a8", marks=pytest.mark.slow), "w4a4"])
def test_quantized_block_fuses_exports_and_runs(tmp_path, scheme):
    """ember.compile(quantize=...) fuses the norm and the gating into their quantizations;
    outputs equal the unfused build's; the .so runs in a process without the compiler."""
    torch.manual_seed(0)
    model = _Block().eval()
    with torch.no_grad():
        model.norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 8, 128)
    calibration = [(torch.randn(2, 8, 128),) for _ in range(2)]
    results = {}
    for fuse in (True, False):
        config = ember.QuantConfig(scheme, calibration=calibration, fuse=fuse)
        compiled = ember.compile(model, (x,), quantize=config, cache=False)
        results[fuse] = (compiled, compiled(x).numpy())
    compiled, out = results[True]
    ops = compiled.programs[0].graph.op_histogram()
    assert ops.get("fused_quantize_rows") == 2
    assert "quantize_rows" not in ops
    np.testing.assert_allclose(out, results[False][1], rtol=1e-5, atol=1e-5)
    library = compiled.export(tmp_path / "model.so")
    np.testing.assert_array_equal(run_exported(library, x.numpy(), tmp_path), out)


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["w8a8", "w4a4"])
def test_tiny_llama_fused_equals_unfused(scheme):
    """transformers' Llama (zoo, hidden 128, 2 layers): every norm and SiLU gating is fused
    (2 norms and 1 gating per layer, the final norm: 7 producers); o_proj's input (attention)
    keeps quantize_rows; logits equal the unfused build's."""
    from examples.zoo import build as zoo

    model = zoo("llama")[0]
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 512, (2, 16), generator=generator)
    calibration = [(torch.randint(0, 512, (2, 16), generator=generator),) for _ in range(2)]
    logits, counts = {}, {}
    for fuse in (True, False):
        config = ember.QuantConfig(scheme, calibration=calibration, fuse=fuse)
        compiled = ember.compile(model, (ids,), quantize=config, cache=False)
        counts[fuse] = compiled.programs[0].graph.op_histogram()
        logits[fuse] = compiled(ids).logits.numpy()
    assert counts[True]["fused_quantize_rows"] == 7
    heads = 2 if scheme == "w4a4" else 1  # Atom: int4 channels and int8 outliers
    assert counts[True]["quantize_rows"] == 2 * heads  # o_proj, per layer
    np.testing.assert_allclose(logits[True], logits[False], rtol=1e-4, atol=1e-4)
