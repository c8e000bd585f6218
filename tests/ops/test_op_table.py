"""Every core op: `infer` agrees with `reference`, `reference` with PyTorch, and the TVM code
built for this CPU (through ember's production build path) with `reference`."""

from __future__ import annotations

import numpy as np
import pytest

from ember.codegen.build import build
from ember.ir import Builder, Graph, interpret
from ember.runtime import Executor
from tests.helpers import assert_close
from tests.ops.samples import SAMPLES, Sample


def _graph(sample: Sample) -> Graph:
    b = Builder()
    inputs = [b.input(shape, dtype, name=f"x{i}") for i, (shape, dtype) in enumerate(sample.inputs)]
    b.output(*b.emit_multi(sample.op, *inputs))
    return b.build()


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.id)
def test_reference_matches_torch_and_infer(sample: Sample, rng):
    arrays = sample.arrays(rng)
    got = interpret(_graph(sample), *arrays)  # the interpreter checks infer against reference
    if sample.torch_fn is None:
        return
    import torch

    expected = sample.torch_fn(*(torch.from_numpy(a) for a in arrays))
    expected = expected if isinstance(expected, tuple | list) else (expected,)
    for g, e in zip(got, expected, strict=True):
        assert_close(g, e.numpy())


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.id)
def test_compute_on_llvm_matches_reference(sample: Sample, rng):
    arrays = sample.arrays(rng)
    g = _graph(sample)
    outputs = Executor(build(g, "llvm").executable).run(arrays)
    for got, want in zip(outputs, interpret(g, *arrays), strict=True):
        assert_close(got.numpy(), want, rtol=1e-5, atol=1e-6)


def test_no_sample_is_vacuous():
    assert all(s.inputs or s.op.name in ("arange", "full") for s in SAMPLES)
    assert np.mean([s.torch_fn is not None for s in SAMPLES]) > 0.9
