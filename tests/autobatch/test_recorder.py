"""The recording hot path in C (autobatch/_recorder.c): references are released, long chains of
lazy values are freed without deep C recursion, and its Python-visible state is type-checked."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

import ember.autobatch as ab
from ember.autobatch.lazy import Call, LazyValue


def test_run_releases_arguments_and_results() -> None:
    blk = ab.block(nn.Linear(4, 4))
    ab.run(lambda t: blk(blk(t)), [torch.randn(1, 4)])  # the block keeps its first call's example
    x = torch.randn(1, 4)
    arg = weakref.ref(x)
    out = ab.run(lambda t: blk(blk(t)), [x])
    result = weakref.ref(out[0])
    del x, out
    gc.collect()
    assert arg() is None
    assert result() is None


def test_no_call_or_value_outlives_its_run() -> None:
    blk = ab.block(nn.Linear(4, 4))
    for _ in range(3):
        out = ab.run(lambda t: blk(blk(t)) + 1, [torch.randn(1, 4) for _ in range(5)])
        del out
    gc.collect()
    alive = [o for o in gc.get_objects() if type(o) in (Call, LazyValue)]
    assert alive == []


def test_a_long_chain_is_freed_without_deep_recursion() -> None:
    """200,000 chained calls recorded, then the instance fails: the whole record (each call
    holding the previous call's value) is freed when the error leaves ab.run."""
    blk = ab.block(torch.tanh, name="tanh")

    def chain(x: torch.Tensor) -> torch.Tensor:
        for _ in range(200_000):
            x = blk(x)
        raise ValueError("stop before launching")

    with pytest.raises(ValueError, match="stop before launching"):
        ab.run(chain, [torch.zeros(1, 2)])


def test_nested_outputs_keep_their_structure() -> None:
    def cell(x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {"pair": (x + 1, x * 2)}

    blk = ab.block(cell, name="nested")
    xs = [torch.randn(1, 3) for _ in range(4)]
    outs = ab.run(lambda x: blk(x), xs)
    for x, out in zip(xs, outs, strict=True):
        torch.testing.assert_close(out["pair"][0], x + 1)
        torch.testing.assert_close(out["pair"][1], x * 2)


def test_keyword_arguments_are_rejected_inside_run() -> None:
    blk = ab.block(torch.tanh, name="tanh")
    with pytest.raises(TypeError, match=r"ab.block\(tanh\) takes positional tensors only"):
        ab.run(lambda x: blk(input=x), [torch.zeros(1, 2)])


def test_signatures_are_tuples() -> None:
    blk = ab.block(torch.tanh)
    with pytest.raises(TypeError, match="out_specs must be a tuple"):
        blk.out_specs = []
    with pytest.raises(TypeError, match="arg_specs must be a tuple"):
        blk.arg_specs = [1]


def test_a_block_whose_function_was_deleted_raises() -> None:
    blk = ab.block(torch.tanh, name="tanh")
    del blk.fn
    with pytest.raises(AttributeError, match=r"ab.block\(tanh\) has no function"):
        blk(torch.zeros(1, 2))


def test_a_function_and_its_closure_are_freed_after_its_run() -> None:
    blk = ab.block(nn.Linear(4, 4))

    def run_once() -> weakref.ref[torch.Tensor]:
        big = torch.randn(1, 4)

        def fn(t: torch.Tensor) -> torch.Tensor:
            return blk(t + big)  # closes over `big`

        ab.run(fn, [torch.randn(1, 4)])
        return weakref.ref(big)

    held = run_once()
    gc.collect()
    assert held() is None  # ab.run keeps no reference to the function it ran


def test_tensor_methods_read_the_value_but_probes_and_shape_queries_do_not() -> None:
    double = ab.block(lambda x: 2 * x, name="double")
    ready_after_probes = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        y = double(x)
        assert not hasattr(y, "_fields")
        assert not hasattr(y, "no_such_attribute")
        known = (y.shape, y.ndim, y.dim(), y.size(), y.size(-1), y.numel(), y.device.type)
        assert known == ((1, 3), 2, 2, (1, 3), 3, 3, "cpu")
        ready_after_probes.append(getattr(y, "ready", None))
        return y.argmax() if y.sum() > 0 else y.abs().max()

    xs = [torch.tensor([[1.0, 3.0, 2.0]]), torch.tensor([[-1.0, -3.0, -2.0]])]
    outs = ab.run(fn, xs)
    assert [o.item() for o in outs] == [fn(x).item() for x in xs] == [1, 6.0]
    assert ready_after_probes[:2] == [False, False]  # first runs: nothing was computed yet
