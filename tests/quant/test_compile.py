"""ember.compile(..., quantize=QuantConfig(...)) on a torch MLP; export to .so and run it through
`ember.runtime.load` in a process that imports only the runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ember
from ember.errors import UsageError
from ember.quantize import parse_quantize
from tests.helpers import run_exported


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(256, 512), torch.nn.GELU(), torch.nn.Linear(512, 128)
    ).eval()


@pytest.mark.parametrize(("scheme", "tolerance"), [("w8a8", 0.03), ("w4a16", 0.15), ("w4a4", 0.3)])
def test_quantized_mlp_exports_and_runs(tmp_path, scheme, tolerance):
    model = _mlp()
    x = torch.randn(4, 16, 256)
    calibration = [(torch.randn(4, 16, 256),) for _ in range(2)]
    config = ember.QuantConfig(scheme, calibration=calibration)
    compiled = ember.compile(model, (x,), quantize=config, cache=False)
    ops = {n.op.name for n in compiled.programs[0].graph.nodes}
    assert {"int8_matmul", "int4_matmul", "int4_group_matmul"} & ops
    assert "matmul" not in ops
    with torch.no_grad():
        expected = model(x).numpy()
    out = compiled(x).numpy()
    assert np.linalg.norm(out - expected) / np.linalg.norm(expected) < tolerance
    library = compiled.export(tmp_path / "model.so")
    np.testing.assert_array_equal(run_exported(library, x.numpy(), tmp_path), out)


def test_random_calibration_warns():
    model = _mlp()
    with pytest.warns(UserWarning, match="no calibration data; using 2 random batches"):
        ember.compile(model, (torch.randn(2, 256),), cache=False,
                      quantize=ember.QuantConfig("w8a8", random_batches=2))  # fmt: skip


def test_cli_spec_and_errors():
    config = parse_quantize("w4a16:group=64,method=rtn")
    assert (config.scheme, config.group_size, config.resolved_method) == ("w4a16", 64, "rtn")
    with pytest.raises(UsageError, match="unknown scheme 'w3a3'"):
        parse_quantize("w3a3")
    with pytest.raises(UsageError, match="scheme w8a8 has no method 'awq'"):
        ember.QuantConfig("w8a8", method="awq")


def test_tiny_llama_w4a4_is_quantized_and_close():
    """transformers' Llama at hidden 128 (K = 128 < 2 x 128 outliers): every linear layer runs
    in W4A4 (64 int8 outlier channels, the rest int4 padded to a group) and the logits keep a
    cosine similarity above 0.95 to fp32 at every position."""
    from examples.zoo import build

    model = build("llama")[0]
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 512, (2, 16), generator=generator)
    calibration = [(torch.randint(0, 512, (2, 16), generator=generator),) for _ in range(4)]
    config = ember.QuantConfig("w4a4", calibration=calibration)
    compiled = ember.compile(model, (ids,), quantize=config, cache=False)
    ops = compiled.programs[0].graph.op_histogram()
    layers = 2 * 7 + 1  # q, k, v, o, gate, up, down per layer, and the LM head
    assert ops["int4_group_matmul"] == layers
    assert ops["int8_matmul"] == layers
    assert ops["matmul"] == 4  # attention's two activation products per layer stay float
    with torch.no_grad():
        expected = model(ids).logits.numpy()
    out = compiled(ids).logits.numpy()
    cosine = np.sum(out * expected, -1) / np.linalg.norm(out, axis=-1)
    cosine /= np.linalg.norm(expected, axis=-1)
    assert cosine.min() > 0.95
