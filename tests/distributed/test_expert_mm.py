"""expert_mm: its reference against PyTorch, and its scheduled kernel against the reference
for a row count known only at run time."""

from __future__ import annotations

import numpy as np
import pytest

from ember.distributed.ops import ExpertMm
from ember.errors import ShapeError
from ember.ir import Builder, TensorType, sym
from tests.helpers import assert_close

torch = pytest.importorskip("torch")


def _case(rng: np.random.Generator, rows: int = 37, period: int = 2, groups: int = 6):
    x = rng.standard_normal((rows, 16)).astype(np.float32)
    w = rng.standard_normal((period, 16, 40)).astype(np.float32)
    sizes = rng.multinomial(rows, [1 / groups] * groups)
    return x, w, np.cumsum(sizes).astype(np.int64)


def test_reference_matches_torch(rng: np.random.Generator):
    x, w, offsets = _case(rng)
    group = torch.searchsorted(torch.from_numpy(offsets), torch.arange(len(x)), right=True)
    expert = torch.clamp(group, max=len(offsets) - 1) % 2
    want = torch.einsum("nk,nkf->nf", torch.from_numpy(x), torch.from_numpy(w)[expert])
    assert_close(ExpertMm(2).reference(x, w, offsets), want.numpy())


def test_kernel_matches_reference_for_dynamic_rows(rng: np.random.Generator):
    from ember.codegen.build import build
    from ember.runtime import Executor

    b = Builder()
    x = b.input((sym("rows"), 16), "float32", "x")
    offsets = b.input((6,), "int64", "offsets")
    w = b.const(rng.standard_normal((2, 16, 40)).astype(np.float32))
    b.output(b.emit(ExpertMm(2), x, w, offsets))
    result = build(b.build({"rows": (1, None)}))
    run = Executor(result.executable, target=result.target).run
    for rows in (37, 5):
        xs, _, offs = _case(rng, rows)
        (got,) = run([xs, offs])
        assert_close(got.numpy(), ExpertMm(2).reference(xs, b.consts[w], offs))


def test_period_must_match_the_weights():
    x, w, o = (
        TensorType((4, 16), "float32"),
        TensorType((3, 16, 8), "float32"),
        TensorType((6,), "int64"),
    )
    with pytest.raises(ShapeError, match="expert_mm: shapes disagree"):
        ExpertMm(2).infer(x, w, o)
