"""pipeline-all-to-all: token chunks, per-chunk symbols, and the wavefront order of the
all-to-alls; with no collectives it only chunks, which must not change the numbers."""

from __future__ import annotations

import numpy as np
import pytest

from ember.distributed.ops import AllToAllStart, AllToAllWait
from ember.errors import PassError
from ember.ir import Graph, interpret, ops, verify
from ember.passes.partition_experts import partition_experts
from ember.passes.pipeline_all_to_all import pipeline_all_to_all
from tests.distributed._graphs import moe_graph
from tests.helpers import assert_close


def _chunk_of(g: Graph) -> dict:
    """Which chunk each node belongs to (by the slice of the input it descends from)."""
    chunk_of_value, chunk = {}, {}
    for node in g.nodes:
        if isinstance(node.op, ops.Slice) and node.inputs[0] is g.inputs[0]:
            chunk[node] = node.op.starts[0]
        else:
            found = {chunk_of_value[v] for v in node.inputs if v in chunk_of_value}
            if len(found) == 1:
                chunk[node] = found.pop()
        if node in chunk:
            chunk_of_value.update(dict.fromkeys(node.outputs, chunk[node]))
    starts = sorted(set(chunk.values()))
    return {n: starts.index(c) for n, c in chunk.items()}


def test_three_chunks_are_pipelined():
    g = partition_experts(moe_graph(), rank=0, world_size=2)
    after = verify(pipeline_all_to_all(g, sizes=(4, 4, 4)))
    assert str(after.inputs[0].type) == "f32[12,8]"
    chunk = _chunk_of(after)
    events = [
        (("start" if isinstance(n.op, AllToAllStart) else "wait"),
         n.op.phase if isinstance(n.op, AllToAllStart) else None, chunk[n])
        for n in after.nodes if isinstance(n.op, AllToAllStart | AllToAllWait)
    ]  # fmt: skip
    phase_of = {}
    for node in after.nodes:  # a wait's phase is its start's
        if isinstance(node.op, AllToAllStart):
            phase_of[node.outputs[0]] = node.op.phase
    events = [
        ("start" if isinstance(n.op, AllToAllStart) else "wait",
         n.op.phase if isinstance(n.op, AllToAllStart) else phase_of[n.inputs[0]], chunk[n])
        for n in after.nodes if isinstance(n.op, AllToAllStart | AllToAllWait)
    ]  # fmt: skip
    assert events == [
        ("start", "dispatch", 0), ("start", "dispatch", 1), ("wait", "dispatch", 0),
        ("start", "combine", 0), ("start", "dispatch", 2), ("wait", "dispatch", 1),
        ("start", "combine", 1), ("wait", "combine", 0), ("wait", "dispatch", 2),
        ("start", "combine", 2), ("wait", "combine", 1), ("wait", "combine", 2),
    ]  # fmt: skip
    received = [str(n.outputs[0].type) for n in after.nodes if isinstance(n.op, AllToAllWait)]
    assert {"f32[recv0_0,8]", "f32[recv0_1,8]", "f32[recv0_2,8]"} <= set(received)


def test_computation_runs_between_start_and_wait():
    g = partition_experts(moe_graph(), rank=0, world_size=2)
    after = pipeline_all_to_all(g, sizes=(4, 4, 4))
    chunk = _chunk_of(after)
    nodes = list(after.nodes)
    start = next(i for i, n in enumerate(nodes) if isinstance(n.op, AllToAllStart)
                 and chunk[n] == 1)  # fmt: skip
    wait = next(i for i, n in enumerate(nodes) if isinstance(n.op, AllToAllWait)
                and chunk[n] == 1)  # fmt: skip
    others = {type(n.op).__name__ for n in nodes[start:wait] if chunk.get(n) not in (None, 1)}
    assert "ExpertMm" in others  # chunk 0's experts run while chunk 1's rows travel


def test_chunking_alone_keeps_the_numbers(rng: np.random.Generator):
    before = moe_graph()
    after = verify(pipeline_all_to_all(before, sizes=(5, 3, 4)))
    x = rng.standard_normal((12, 8)).astype(np.float32)
    (got,) = interpret(after, x)
    (want,) = interpret(before, x)
    assert_close(got, want)


def test_needs_a_symbolic_token_dim():
    with pytest.raises(PassError, match="exactly one symbolic dim"):
        pipeline_all_to_all(moe_graph(tokens=12), sizes=(6, 6))
