"""The round's arena: output rows and gather indices start 64-byte aligned (TVM reads them in
place) and never overlap; its memory is reused by later runs only once nothing refers to it."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

import ember.autobatch as ab
from ember.autobatch import arena
from ember.autobatch.arena import Arena
from ember.autobatch.kernel import arg_spec


def test_gather_indices_are_aligned_disjoint_views_of_one_buffer() -> None:
    block = SimpleNamespace(arg_specs=(arg_spec((1, 3), torch.float32),) * 3,
                            out_specs=(arg_spec((1, 5), torch.float32),))  # fmt: skip
    groups = [(block, n) for n in (1, 7, 9, 64)]
    round_arena = Arena(groups)
    taken = []
    for _, n in groups:
        for _ in block.arg_specs:  # every argument of every launch gathered: the most it takes
            rows, address = round_arena.index(n)
            assert rows.dtype == np.int64
            assert rows.shape == (n,)
            assert address % 64 == 0
            assert address == rows.ctypes.data
            rows[:] = len(taken)  # writes through to the one buffer, no copy
            taken.append((address, rows))
    spans = sorted((a, a + 8 * len(r)) for a, r in taken)
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))
    assert all((r == i).all() for i, (_, r) in enumerate(taken))  # none overwrote another


def test_more_gather_indices_than_sized_for_get_fresh_memory() -> None:
    """An inlined block's own arguments take indices beyond one per argument of the groups."""
    block = SimpleNamespace(arg_specs=(arg_spec((1, 3), torch.float32),),
                            out_specs=(arg_spec((1, 5), torch.float32),))  # fmt: skip
    round_arena = Arena([(block, 10)])
    taken = [round_arena.index(n) for n in (10, 10, 100)]
    for i, ((rows, address), n) in enumerate(zip(taken, (10, 10, 100), strict=True)):
        assert rows.shape == (n,)
        assert address % 64 == 0
        assert address == rows.ctypes.data
        rows[:] = i
    assert all((rows == i).all() for i, (rows, _) in enumerate(taken))


def test_output_rows_start_aligned() -> None:
    spec = arg_spec((1, 5), torch.float32)  # 20-byte rows: 16 rows per 64 bytes
    block = SimpleNamespace(arg_specs=(spec,), out_specs=(spec,))
    round_arena = Arena([(block, 3), (block, 17)])
    for n in (3, 17):
        buffer, first = round_arena.place(spec, n)
        assert buffer.torch[first:].data_ptr() % 64 == 0
        assert buffer.rows(first, n).shape == (n, 5)


def _chain_block() -> tuple[Any, Any]:
    weight = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
    step = ab.block(lambda x: torch.tanh(x @ weight), name="step")

    def chain(x: torch.Tensor) -> Any:
        for _ in range(3):
            x = step(x)
        return x

    return step, chain


def _inputs(seed: int) -> list[torch.Tensor]:
    return [torch.randn(1, 8, generator=torch.Generator().manual_seed(seed + i)) for i in range(6)]


def test_a_later_run_reuses_the_memory_and_earlier_results_stay() -> None:
    _, chain = _chain_block()
    first = ab.run(chain, _inputs(0))
    memory = {key: m.ctypes.data for key, (m, _) in arena._SPARE.items()}
    second = ab.run(chain, _inputs(100))
    assert {key: m.ctypes.data for key, (m, _) in arena._SPARE.items()} == memory  # no new pages
    with torch.no_grad():
        for got, x in zip(first + second, _inputs(0) + _inputs(100), strict=True):
            torch.testing.assert_close(got, chain(x), rtol=1e-5, atol=1e-5)


def test_a_value_kept_past_its_run_keeps_its_memory() -> None:
    step, chain = _chain_block()
    kept: list[Any] = []

    def keep_first(x: torch.Tensor) -> Any:
        kept.append(step(x))  # a LazyValue leaves the run: its buffer must stay as it was
        return chain(x)

    ab.run(keep_first, _inputs(0))
    key = ((8,), torch.float32)
    held = arena._SPARE[key][0].ctypes.data
    ab.run(chain, _inputs(100))  # must not overwrite the kept values' rows
    assert arena._SPARE[key][0].ctypes.data != held
    with torch.no_grad():
        for value, x in zip(kept, _inputs(0), strict=True):
            torch.testing.assert_close(value.value(), step.fn(x), rtol=1e-5, atol=1e-5)


def test_a_huge_arena_is_not_kept_after_its_run(monkeypatch: pytest.MonkeyPatch) -> None:
    _, chain = _chain_block()
    monkeypatch.setattr(arena, "SPARE_MAX_BYTES", 64)  # every arena of this run is "huge"
    monkeypatch.setattr(arena, "_SPARE", {})
    ab.run(chain, _inputs(0))
    assert arena._SPARE == {}
