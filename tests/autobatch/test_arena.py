"""The round's arena: output rows and gather indices start 64-byte aligned (TVM reads them in
place) and never overlap."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import torch

from ember.autobatch.arena import Arena
from ember.autobatch.kernel import arg_spec


def test_gather_indices_are_aligned_disjoint_views_of_one_buffer() -> None:
    block = SimpleNamespace(arg_specs=(arg_spec((1, 3), torch.float32),) * 3,
                            out_specs=(arg_spec((1, 5), torch.float32),))  # fmt: skip
    groups = [(block, n) for n in (1, 7, 9, 64)]
    arena = Arena(groups)
    taken = []
    for _, n in groups:
        for _ in block.arg_specs:  # every argument of every launch gathered: the most it takes
            rows, address = arena.index(n)
            assert rows.dtype == np.int64
            assert rows.shape == (n,)
            assert address % 64 == 0
            assert address == rows.ctypes.data
            rows[:] = len(taken)  # writes through to the one buffer, no copy
            taken.append((address, rows))
    spans = sorted((a, a + 8 * len(r)) for a, r in taken)
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))
    assert all((r == i).all() for i, (_, r) in enumerate(taken))  # none overwrote another


def test_output_rows_start_aligned() -> None:
    spec = arg_spec((1, 5), torch.float32)  # 20-byte rows: 16 rows per 64 bytes
    block = SimpleNamespace(arg_specs=(spec,), out_specs=(spec,))
    arena = Arena([(block, 3), (block, 17)])
    for n in (3, 17):
        buffer, first = arena.place(spec, n)
        assert buffer.torch[first:].data_ptr() % 64 == 0
        assert buffer.rows(first, n).shape == (n, 5)
