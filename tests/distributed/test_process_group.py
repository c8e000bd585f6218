"""Real gloo process groups on loopback: expert-parallel outputs equal the single-process
graph's, and a rank that dies or hangs fails the run on every rank instead of hanging."""

from __future__ import annotations

import os
import re
import signal
import time

import numpy as np
import pytest

pytest.importorskip("torch")

from ember.distributed import DistributedError, launch
from ember.distributed.process_group import init
from tests.distributed._graphs import HIDDEN, moe_graph

TOKENS = 12


def _tokens(rank: int) -> np.ndarray:
    return np.random.default_rng(rank).standard_normal((TOKENS, HIDDEN)).astype(np.float32)


def _compiled(sizes: tuple[int, ...]):
    import torch.distributed as dist

    from ember.api import compile_graph
    from ember.distributed.compile import DistributedProgram, partition_graph

    g = partition_graph(moe_graph(), sizes, rank=dist.get_rank(), world_size=dist.get_world_size())
    return DistributedProgram(compile_graph(g, passes=(), cache=False), sizes)


def _run_rank(sizes: tuple[int, ...]) -> float:
    import torch
    import torch.distributed as dist

    from ember.ir import interpret

    x = _tokens(dist.get_rank())
    got = _compiled(sizes)(torch.from_numpy(x)).numpy()
    (want,) = interpret(moe_graph(), x)
    return float(np.abs(got - want).max())


def test_two_ranks_match_the_single_process_graph():
    errors = launch(_run_rank, 2, (5, 7), timeout=60.0)
    assert max(errors) < 1e-5


@pytest.mark.slow
def test_four_ranks_match_the_single_process_graph():
    errors = launch(_run_rank, 4, (4, 4, 4), timeout=120.0)
    assert max(errors) < 1e-5


def _kill_one(victim: int) -> None:
    import torch
    import torch.distributed as dist

    program = _compiled((6, 6))
    dist.barrier()
    if dist.get_rank() == victim:
        os.kill(os.getpid(), signal.SIGKILL)
    program(torch.from_numpy(_tokens(dist.get_rank())))


def test_a_killed_rank_fails_the_others_without_a_hang():
    start = time.monotonic()
    with pytest.raises(DistributedError) as info:
        launch(_kill_one, 2, 1, timeout=20.0)
    message = str(info.value)
    assert "rank 1: died: killed by SIGKILL" in message
    assert re.search(r"rank 0: DistributedError: rank 0: the \S+ \S+ failed", message)
    assert time.monotonic() - start < 120  # failed by the collective timeout at the latest


def _hang_one(victim: int) -> None:
    import torch
    import torch.distributed as dist

    program = _compiled((12,))
    dist.barrier()
    if dist.get_rank() == victim:
        time.sleep(600)
    program(torch.from_numpy(_tokens(dist.get_rank())))


@pytest.mark.slow
def test_a_hanging_rank_times_out():
    with pytest.raises(DistributedError) as info:
        launch(_hang_one, 2, 1, timeout=5.0)
    message = str(info.value)
    assert "rank 0: DistributedError" in message
    assert "rank 1: still running after the run failed; terminated" in message


def test_init_without_a_launcher_says_what_to_do(monkeypatch: pytest.MonkeyPatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(DistributedError, match=r"Start ranks with torchrun or ember\.distributed"):
        init(timeout=5.0)


def _raise_on_rank_one() -> int:
    import torch.distributed as dist

    if dist.get_rank() == 1:
        raise ValueError("bad input on rank 1")
    return dist.get_rank()


def test_an_exception_on_one_rank_is_reported():
    with pytest.raises(DistributedError, match="rank 1: ValueError: bad input on rank 1"):
        launch(_raise_on_rank_one, 2, timeout=10.0)


def _different_chunks() -> None:
    import torch
    import torch.distributed as dist

    from ember.distributed import compile_moe

    compile_moe(torch.nn.Identity(), torch.zeros(1, 8, 4), chunks=1 + dist.get_rank())


def test_ranks_must_compile_the_same_chunks():
    with pytest.raises(DistributedError, match=r"ranks were given different chunks \[\(8,\), "):
        launch(_different_chunks, 2, timeout=20.0)
