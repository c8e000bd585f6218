"""max_pool_indices against torch's max_pool2d(return_indices=True), and its TE compute on llvm."""

from __future__ import annotations

import numpy as np
import pytest

from ember.ir.ops import MaxPoolIndices
from tests.helpers import run_compute

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("column_major", [False, True])
def test_max_pool_indices_match_torch_and_compute(rng, column_major):
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    op = MaxPoolIndices((3, 2), (2, 2), (1, 0, 1, 1), (1, 1), False, column_major)
    _, plane = torch.nn.functional.max_pool2d(torch.from_numpy(x), (3, 2), (2, 2), (1, 0),
                                              return_indices=True)  # fmt: skip
    plane = plane.numpy()
    if column_major:  # torch counts h * W + w; column-major counts w * H + h
        plane = (plane % 6) * 5 + plane // 6
    offsets = (np.arange(2)[:, None] * 3 + np.arange(3)[None, :]) * 30
    expected = plane + offsets[:, :, None, None]
    got = op.reference(x)
    np.testing.assert_array_equal(got, expected)
    (computed,) = run_compute(op, x)
    np.testing.assert_array_equal(computed, expected)
