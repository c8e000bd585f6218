"""conv, conv_transpose, pools and einsum: references against torch; TE computes vs references."""

from __future__ import annotations

import numpy as np
import pytest

from ember.errors import ShapeError
from ember.ir import TensorType
from ember.ir.ops import AvgPool, Conv, ConvTranspose, Einsum, LpPool, MaxPool
from tests.helpers import assert_close, run_compute

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _t(a: np.ndarray):
    return torch.tensor(a)


def _close(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_conv_matches_torch(rng):
    x = rng.standard_normal((2, 4, 9, 8)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 2)).astype(np.float32)
    op = Conv(strides=(2, 1), pads=(1, 0, 1, 0), dilations=(1, 2), groups=2)
    _close(
        op.reference(x, w),
        F.conv2d(_t(x), _t(w), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2).numpy(),
    )


def test_conv1d_and_conv_transpose_match_torch(rng):
    x = rng.standard_normal((1, 3, 10)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3)).astype(np.float32)
    _close(Conv((1,), (2, 2), (1,)).reference(x, w), F.conv1d(_t(x), _t(w), padding=2).numpy())
    x2 = rng.standard_normal((1, 4, 5, 6)).astype(np.float32)
    wt = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    op = ConvTranspose(
        strides=(2, 2), pads=(1, 1, 1, 1), dilations=(1, 1), groups=1, output_padding=(1, 0)
    )
    want = F.conv_transpose2d(_t(x2), _t(wt), stride=2, padding=1, output_padding=(1, 0)).numpy()
    _close(op.reference(x2, wt), want)


def test_pools_match_torch(rng):
    x = rng.standard_normal((1, 2, 7, 6)).astype(np.float32)
    mp = MaxPool(kernel=(3, 2), strides=(2, 2), pads=(1, 0, 1, 0), dilations=(1, 1), ceil_mode=True)
    _close(mp.reference(x), F.max_pool2d(_t(x), (3, 2), 2, (1, 0), ceil_mode=True).numpy())
    ap = AvgPool(
        kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1), dilations=(1, 1), count_include_pad=True
    )
    _close(ap.reference(x), F.avg_pool2d(_t(x), 3, 2, 1, count_include_pad=True).numpy())
    ap = AvgPool(kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1), dilations=(1, 1))
    _close(ap.reference(x), F.avg_pool2d(_t(x), 3, 2, 1, count_include_pad=False).numpy())
    lp = LpPool(kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0), dilations=(1, 1), p=2)
    _close(lp.reference(x), F.lp_pool2d(_t(x), 2, 2, 2).numpy())


def test_conv_rejects_channel_mismatch():
    with pytest.raises(ShapeError, match="channels 3 != weight 2 \\* groups 1"):
        Conv((1,), (0, 0), (1,)).infer(
            TensorType((1, 3, 8), "float32"), TensorType((4, 2, 3), "float32")
        )


def test_einsum_matches_numpy(rng):
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 4, 5))
    _close(Einsum("bij,bjk->bik").reference(a, b), np.einsum("bij,bjk->bik", a, b))
    assert Einsum("ij,jk").infer(
        TensorType((2, 3), "float32"), TensorType((3, 4), "float32")
    ).shape == (2, 4)


@pytest.mark.slow
def test_computes_match_reference(rng):
    x = rng.standard_normal((1, 4, 7, 6)).astype(np.float32)
    w = rng.standard_normal((4, 2, 3, 2)).astype(np.float32)
    cases = [
        (Conv(strides=(2, 1), pads=(1, 0, 1, 1), dilations=(1, 2), groups=2), [x, w]),
        (
            ConvTranspose(
                strides=(2, 1), pads=(1, 0, 0, 1), dilations=(1, 2), groups=2, output_padding=(1, 0)
            ),
            [x, w],
        ),
        (
            MaxPool(
                kernel=(3, 2), strides=(2, 2), pads=(1, 0, 1, 1), dilations=(1, 1), ceil_mode=True
            ),
            [x],
        ),
        (
            AvgPool(
                kernel=(3, 2),
                strides=(2, 2),
                pads=(1, 0, 1, 1),
                dilations=(1, 1),
                count_include_pad=True,
            ),
            [x],
        ),
        (LpPool(kernel=(2, 2), strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), p=2), [x]),
    ]
    for op, args in cases:
        assert_close(run_compute(op, *args)[0], op.reference(*args))
