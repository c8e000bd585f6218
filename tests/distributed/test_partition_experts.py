"""partition-experts: the captured MoE pattern becomes counts exchange + dispatch/combine
all-to-alls around expert_mm on this rank's experts; other graphs are left alone."""

from __future__ import annotations

import numpy as np
import pytest

from ember.distributed.ops import AllToAllStart, AllToAllWait, ExchangeCounts, ExpertMm
from ember.errors import PassError
from ember.ir import Builder, print_graph, verify
from ember.ir.ops import GroupedMm, Slice
from ember.passes.partition_experts import partition_experts
from tests.distributed._graphs import EXPERTS, moe_graph


def _ops(g):
    return [type(n.op) for n in g.nodes]


def test_moe_layer_is_partitioned():
    g = verify(partition_experts(moe_graph(), rank=1, world_size=2))
    ops = _ops(g)
    assert GroupedMm not in ops
    assert ops.count(ExchangeCounts) == 1
    assert ops.count(AllToAllStart) == ops.count(AllToAllWait) == 2
    assert ops.count(ExpertMm) == 2
    phases = [n.op.phase for n in g.nodes if isinstance(n.op, AllToAllStart)]
    assert phases == ["dispatch", "combine"]
    waits = [n for n in g.nodes if isinstance(n.op, AllToAllWait)]
    assert str(waits[0].outputs[0].type) == "f32[recv0,8]"  # rows depend on the routing
    assert str(waits[1].outputs[0].type) == "f32[tokens,8]"  # every row comes back
    slices = [n.op for n in g.nodes if isinstance(n.op, Slice)]
    assert {(s.starts, s.stops) for s in slices} == {((2,), (4,))}  # rank 1 owns experts 2, 3
    assert all(n.op.period == EXPERTS // 2 for n in g.nodes if isinstance(n.op, ExpertMm))


def test_order_is_counts_then_dispatch_then_experts_then_combine():
    g = partition_experts(moe_graph(), rank=0, world_size=2)
    order = [type(n.op) for n in g.nodes if isinstance(n.op, (ExchangeCounts, AllToAllStart,
                                                               AllToAllWait, ExpertMm))]  # fmt: skip
    assert order == [ExchangeCounts, AllToAllStart, AllToAllWait, ExpertMm, ExpertMm,
                     AllToAllStart, AllToAllWait]  # fmt: skip


def test_grouped_mm_without_cumsum_offsets_is_kept():
    b = Builder()
    x = b.input((6, 8), "float32", "x")
    offsets = b.input((EXPERTS,), "int32", "offsets")
    w = b.const(np.ones((EXPERTS, 8, 4), np.float32))
    b.output(b.emit(GroupedMm(), x, w, offsets))
    g = b.build()
    assert print_graph(partition_experts(g, rank=0, world_size=2)) == print_graph(g)


def test_experts_must_split_evenly():
    with pytest.raises(PassError, match=r"4 experts .* do not split evenly over 3 ranks"):
        partition_experts(moe_graph(), rank=0, world_size=3)


def test_rank_must_be_in_the_group():
    with pytest.raises(PassError, match=r"rank=2 is not in \[0, world_size=2\)"):
        partition_experts(moe_graph(), rank=2, world_size=2)
