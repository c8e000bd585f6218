"""pad and dim_values: references against torch and known values; pad's TE compute vs reference."""

from __future__ import annotations

import numpy as np
import pytest

from ember.errors import ShapeError
from ember.ir import TensorType, sym
from ember.ir.ops import DimValues, Pad
from tests.helpers import assert_close, run_compute

torch = pytest.importorskip("torch")
MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@pytest.mark.parametrize("mode", list(MODES))
def test_pad_matches_torch(rng, mode):
    x = rng.standard_normal((1, 2, 5, 6)).astype(np.float32)
    op = Pad(pads=(0, 0, 2, 1, 0, 0, 1, 3), mode=mode, value=0.5)
    value = {"value": 0.5} if mode == "constant" else {}
    expected = torch.nn.functional.pad(torch.tensor(x), (1, 3, 2, 1), mode=MODES[mode], **value)
    assert_close(op.reference(x), expected.numpy())


def test_negative_pads_crop_and_symbolic_dims_infer():
    x = np.arange(6, dtype=np.int64).reshape(2, 3)
    np.testing.assert_array_equal(Pad(pads=(0, -1, 1, 0)).reference(x), [[1, 2], [4, 5], [0, 0]])
    n = sym("n")
    assert Pad(pads=(1, 0, 1, 2)).infer(TensorType((n, 3), "float32")).shape == (n + 2, 5)
    with pytest.raises(ShapeError, match="needs 2 entries per axis"):
        Pad(pads=(1, 1)).infer(TensorType((2, 3), "float32"))


def test_dim_values_reference_is_int64():
    assert DimValues(values=(2, 3)).reference().tolist() == [2, 3]
    assert DimValues(values=(sym("b"), 3)).infer() == TensorType((2,), "int64")


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(MODES))
def test_pad_compute_matches_reference(rng, mode):
    x = rng.standard_normal((2, 5, 6)).astype(np.float32)
    op = Pad(pads=(0, 2, -1, 0, 3, 2), mode=mode, value=-1.0)
    assert_close(run_compute(op, x)[0], op.reference(x))
