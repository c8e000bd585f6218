"""Misuse of blocks and ab.run raises AutobatchError (an EmberError) naming the block, the
argument and the shapes; none of these cases compiles anything."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ember
import ember.autobatch as ab
from ember.autobatch.ghosts import add_ghosts
from tests.autobatch.models import branch_program


def test_block_outside_run_is_eager() -> None:
    linear = nn.Linear(3, 2)
    blk = ab.block(linear)
    x = torch.randn(1, 3)
    torch.testing.assert_close(blk(x), linear(x))


def test_non_tensor_return() -> None:
    blk = ab.block(lambda x: float(x.sum()), name="scalar")
    with pytest.raises(ember.EmberError, match="block scalar returned float"):
        ab.run(lambda x: blk(x), [torch.zeros(1, 2)])


def test_mismatched_shapes() -> None:
    blk = ab.block(nn.Linear(4, 4), name="proj")

    def fn(x: torch.Tensor) -> torch.Tensor:
        return blk(x)

    with pytest.raises(
        ab.AutobatchError,
        match=r"block proj: argument 0 is float32\[1, 5\] but the block was first called with "
        r"float32\[1, 4\]",
    ):
        ab.run(fn, [torch.zeros(1, 4), torch.zeros(1, 5)])


def test_first_call_failure_names_block_and_shapes() -> None:
    blk = ab.block(nn.Linear(4, 4), name="proj")
    with pytest.raises(ab.AutobatchError, match=r"block proj failed on its first call with "
                       r"arguments \['float32\[1, 5\]'\]"):  # fmt: skip
        ab.run(lambda x: blk(x), [torch.zeros(1, 5)])


def test_non_tensor_argument() -> None:
    blk = ab.block(lambda x, k: x * k, name="scale")
    with pytest.raises(ab.AutobatchError, match="argument 1 is a int; blocks take tensors"):
        ab.run(lambda x: blk(x, 3), [torch.zeros(1, 2)])


def test_per_instance_argument_needs_batch_dim() -> None:
    blk = ab.block(lambda x, w: x @ w, name="mm")
    with pytest.raises(ab.AutobatchError, match=r"argument 1 \(float32\[2, 2\]\) differs"):
        ab.run(lambda x: blk(x, torch.eye(2)), [torch.zeros(1, 2), torch.zeros(1, 2)])


def test_nested_run() -> None:
    with pytest.raises(ab.AutobatchError, match="cannot be nested"):
        ab.run(lambda x: ab.run(lambda y: y, [x]), [1])


def test_ghost_pass_pads_the_shorter_branch() -> None:
    _, classify = branch_program(3, 4)
    padded = add_ghosts(classify)
    assert padded.__ab_ghosts__ == 1  # else-branch: h = __ab_ghost(h, 1)
    x = torch.randn(1, 3)
    torch.testing.assert_close(padded(x), classify(x))  # outside ab.run a ghost is a no-op


def test_ghost_pass_leaves_balanced_and_returning_branches() -> None:
    blk = ab.block(nn.Linear(2, 2))

    def balanced(x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # noqa: SIM108  (the ghost pass reads if statements)
            x = blk(x)
        else:
            x = blk(-x)
        return x

    def returning(x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return blk(blk(x))
        return blk(x)

    assert add_ghosts(balanced) is balanced
    assert add_ghosts(returning) is returning


@pytest.mark.parametrize("enabled", [True, False])
def test_run_restores_the_garbage_collector(enabled: bool) -> None:
    """ab.run pauses Python's cyclic GC while it records; the caller's setting comes back, also
    when the run fails."""
    import gc

    blk = ab.block(nn.Linear(4, 4), name="proj")
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        assert ab.run(lambda _: gc.isenabled(), [0]) == [False]
        assert gc.isenabled() is enabled
        with pytest.raises(ab.AutobatchError, match="block proj"):
            ab.run(lambda x: blk(x), [torch.zeros(1, 4), torch.zeros(1, 5)])
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()
