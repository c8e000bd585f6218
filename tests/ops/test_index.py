"""index ops: references against torch, and TE computes built for llvm against references."""

from __future__ import annotations

import numpy as np
import pytest

from ember.ir import TensorType
from ember.ir.ops import (
    CumProd,
    CumSum,
    GatherElements,
    GatherNd,
    OneHot,
    ScatterElements,
    ScatterNd,
    TopK,
    Trilu,
)  # fmt: skip
from tests.helpers import assert_close, run_compute

torch = pytest.importorskip("torch")


def _x(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def test_cumsum_and_cumprod_match_torch(rng):
    x = _x(rng, 3, 5)
    assert_close(CumSum(axis=1).reference(x), torch.cumsum(torch.tensor(x), 1).numpy())
    assert_close(CumProd(axis=0).reference(x), torch.cumprod(torch.tensor(x), 0).numpy())
    exclusive_reverse = CumSum(axis=0, exclusive=True, reverse=True).reference(
        np.array([1, 2, 3], np.int64)
    )
    np.testing.assert_array_equal(exclusive_reverse, [5, 3, 0])


def test_topk_matches_torch_and_prefers_lower_index_on_ties(rng):
    x = _x(rng, 4, 6)
    values, indices = TopK(k=3, axis=1).reference(x)
    expected = torch.topk(torch.tensor(x), 3, dim=1)
    assert_close(values, expected.values.numpy())
    np.testing.assert_array_equal(indices, expected.indices.numpy())
    _, tied = TopK(k=2, axis=0, largest=False).reference(np.array([2.0, 1.0, 1.0], np.float32))
    np.testing.assert_array_equal(tied, [1, 2])
    assert TopK(k=3, axis=1).infer(TensorType((4, 6), "float32"))[1] == TensorType((4, 3), "int64")


def test_trilu_matches_torch(rng):
    x = _x(rng, 2, 4, 5)
    assert_close(Trilu(upper=True, k=1).reference(x), torch.triu(torch.tensor(x), 1).numpy())
    assert_close(Trilu(upper=False, k=-1).reference(x), torch.tril(torch.tensor(x), -1).numpy())


def test_gather_and_scatter_elements_match_torch(rng):
    x = _x(rng, 3, 4)
    index = rng.integers(0, 3, (2, 4))
    expected = torch.gather(torch.tensor(x), 0, torch.tensor(index)).numpy()
    assert_close(GatherElements(axis=0).reference(x, index), expected)
    updates = _x(rng, 2, 4)
    scattered = torch.tensor(x).scatter_add(0, torch.tensor(index), torch.tensor(updates)).numpy()
    assert_close(ScatterElements(axis=0, reduction="add").reference(x, index, updates), scattered)


def test_gather_nd_scatter_nd_and_one_hot_known_values():
    x = np.arange(8, dtype=np.int64).reshape(2, 2, 2)
    np.testing.assert_array_equal(
        GatherNd().reference(x, np.array([[0, 1], [1, 0]])), [[2, 3], [4, 5]]
    )
    out = ScatterNd().reference(
        np.zeros((3, 2), np.int64), np.array([[2], [0]]), np.array([[7, 8], [9, 9]])
    )
    np.testing.assert_array_equal(out, [[9, 9], [0, 0], [7, 8]])
    hot = OneHot(depth=3, axis=-1, on_value=5, off_value=0, dtype="int64").reference(
        np.array([0, -1])
    )
    np.testing.assert_array_equal(hot, [[5, 0, 0], [0, 0, 5]])


def test_scatter_elements_rejects_unknown_reduction():
    x = TensorType((3,), "float32")
    with pytest.raises(Exception, match="reduction must be one of"):
        ScatterElements(reduction="mean").infer(
            x, TensorType((2,), "int64"), TensorType((2,), "float32")
        )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("op", "shapes"),
    [
        (CumSum(axis=1), None), (CumSum(axis=0, exclusive=True, reverse=True), None),
        (CumProd(axis=1), None), (Trilu(upper=False, k=1), None), (TopK(k=2, axis=1), None),
        (GatherElements(axis=1), "gather"), (ScatterElements(axis=1, reduction="add"), "scatter"),
        (GatherNd(), "gather_nd"), (ScatterNd(), "scatter_nd"),
    ],
)  # fmt: skip
def test_compute_matches_reference(rng, op, shapes):
    x = _x(rng, 3, 5)
    args = {
        None: [x],
        "gather": [x, rng.integers(-5, 5, (3, 2))],
        "scatter": [x, rng.integers(0, 5, (2, 5)), _x(rng, 2, 5)],
        "gather_nd": [x, np.array([[0, 1], [2, -1]], np.int64)],
        "scatter_nd": [x, np.array([[2], [0]], np.int64), _x(rng, 2, 5)],
    }[shapes]
    expected = op.reference(*args)
    for got, want in zip(
        run_compute(op, *args),
        expected if isinstance(expected, tuple) else (expected,),
        strict=True,
    ):
        assert_close(got, want)
