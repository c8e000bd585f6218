"""grouped_mm and histc: shape rules, the numpy reference against PyTorch, the TE compute
built for CPU against the reference, and grouped_mm's CPU row-GEMM kernel (codegen/row_gemm.py)
on a symbolic row count against the reference."""

from __future__ import annotations

import numpy as np
import pytest

from ember.errors import ShapeError
from ember.ir import Builder, TensorType, sym
from ember.ir.ops import GroupedMm, Histc
from tests.helpers import assert_close, run_compute


def _grouped_inputs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = rng.standard_normal((10, 8)).astype(np.float32)  # aten._grouped_mm wants 16-byte rows
    w = rng.standard_normal((4, 8, 4)).astype(np.float32)
    offsets = np.array([3, 3, 7, 9], dtype=np.int32)  # group 1 is empty, row 9 is in no group
    return x, w, offsets


def test_grouped_mm_reference_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x, w, offsets = _grouped_inputs(rng)
    got = GroupedMm().reference(x, w, offsets)
    expected = torch.zeros(10, 4)
    start = 0
    for e, end in enumerate(offsets.tolist()):
        expected[start:end] = torch.from_numpy(x[start:end]) @ torch.from_numpy(w[e])
        start = end
    assert_close(got, expected.numpy())
    assert not got[9].any()


def test_grouped_mm_reference_matches_aten_grouped_mm(rng):
    torch = pytest.importorskip("torch")
    x, w, offsets = _grouped_inputs(rng)
    got = GroupedMm().reference(x[:9], w, offsets)
    expected = torch._grouped_mm(
        torch.from_numpy(x[:9]), torch.from_numpy(w), offs=torch.from_numpy(offsets)
    )
    assert_close(got, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_grouped_mm_infer_keeps_symbolic_rows():
    s = sym("tokens")
    out = GroupedMm().infer(TensorType((s, 6), "float32"), TensorType((4, 6, 5), "float32"),
                            TensorType((4,), "int32"))  # fmt: skip
    assert out == TensorType((s, 5), "float32")


def test_grouped_mm_rejects_mismatched_inner_dims():
    with pytest.raises(ShapeError, match="grouped_mm: shapes disagree"):
        GroupedMm().infer(TensorType((8, 6), "float32"), TensorType((4, 7, 5), "float32"),
                          TensorType((4,), "int32"))  # fmt: skip


def test_grouped_mm_compute_matches_reference(rng):
    x, w, offsets = _grouped_inputs(rng)
    (got,) = run_compute(GroupedMm(), x, w, offsets)
    assert_close(got, GroupedMm().reference(x, w, offsets))


@pytest.mark.parametrize("columns", [128, 40])  # 64-column tiles; 8-column tiles
def test_grouped_mm_cpu_kernel_matches_reference(rng, columns):
    import tvm

    from ember.codegen.build import build
    from ember.codegen.lower import to_relax
    from ember.runtime import Executor

    b = Builder()
    x = b.input((sym("rows"), 24), "float32", "x")
    offsets = b.input((4,), "int32", "offsets")
    w = b.const(rng.standard_normal((4, 24, columns)).astype(np.float32))
    b.output(b.emit(GroupedMm(), x, w, offsets))
    graph = b.build({"rows": (1, None)})
    with tvm.target.Target("llvm"):
        names = [gv.name_hint for gv in to_relax(graph).functions]
    assert "row_gemm_0" in names  # the CPU kernel, not the TE compute
    result = build(graph)
    run = Executor(result.executable, target=result.target).run
    for rows in (1, 6, 13, 40):  # whole and partial 6-row tiles
        xs = rng.standard_normal((rows, 24)).astype(np.float32)
        ends = np.sort(rng.integers(0, rows, 4)).astype(np.int32)
        ends[-1] = rows - 1  # the last row is in no group: zeros
        (got,) = run([xs, ends])
        expected = GroupedMm().reference(xs, b.consts[w], ends)
        assert_close(got.numpy(), expected)
        assert not got.numpy()[rows - 1].any()


def test_histc_reference_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.integers(-1, 6, (40,)).astype(np.float32)  # -1 and 5 fall outside [0, 4]
    for bins, lo, hi in [(4, 0.0, 3.0), (5, 0.0, 4.0), (7, -0.5, 2.5)]:
        expected = torch.histc(torch.from_numpy(x), bins=bins, min=lo, max=hi).numpy()
        assert_close(Histc(bins, lo, hi).reference(x), expected)


def test_histc_needs_a_fixed_range():
    with pytest.raises(
        ShapeError, match="min == max, which takes the data's range, is not supported"
    ):
        Histc(4, 0.0, 0.0).infer(TensorType((8,), "float32"))


def test_histc_compute_matches_reference(rng):
    x = rng.integers(-1, 6, (4, 10)).astype(np.float32)
    (got,) = run_compute(Histc(4, 0.0, 3.0), x)
    assert_close(got, Histc(4, 0.0, 3.0).reference(x))
