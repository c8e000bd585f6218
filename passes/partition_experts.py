"""Expert parallelism for captured MoE layers (Mixtral, Qwen2-MoE through `grouped_mm`).

    rows sorted by expert, counts = histc(...), offsets = cumsum(counts)
    y = grouped_mm(ffn(grouped_mm(rows, w1, offsets)), w2, offsets)
=>  recv_counts = exchange_counts(counts)                     # (ranks, local experts)
    got = all_to_all_wait(all_to_all_start(rows, send_splits, recv_splits))
    h = expert_mm(ffn(expert_mm(got, w1[mine], cumsum(recv_counts))), w2[mine], ...)
    y = all_to_all_wait(all_to_all_start(h, recv_splits, send_splits))

Rank r keeps experts [r*E/R, (r+1)*E/R). Counts go first because routing is data dependent:
each rank learns how many rows it will receive from every rank, per local expert, before the
rows move. Received rows stay grouped by (source rank, local expert), which `expert_mm` reads
directly; the combine all-to-all returns every row to its sender in its original position.
Each rank runs the pass with its own `rank` on its own tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from ember.distributed.ops import AllToAllStart, AllToAllWait, ExchangeCounts, ExpertMm
from ember.errors import PassError
from ember.ir import Builder, DType, Graph, Node, Value, rewrite
from ember.ir.ops import Cast, CumSum, GroupedMm, ReduceSum, Reshape, Slice  # type: ignore[attr-defined]
from ember.passes.registry import graph_pass

__all__ = ["partition_experts"]


@dataclass(frozen=True)
class _Layer:
    """One MoE layer's expert computation: grouped_mm nodes sharing one offsets tensor."""

    index: int
    first: Node
    last: Node
    region: frozenset[Node]
    counts: Value


def _cone(g: Graph, start: Node, forward: bool) -> set[Node]:
    producers, users = g.producers, g.users
    seen: set[Node] = set()
    todo = [start]
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        if forward:
            todo.extend(u for v in node.outputs for u in users.get(v, []))
        else:
            todo.extend(p for v in node.inputs if (p := producers.get(v)) is not None)
    return seen


def _const_derived(g: Graph) -> set[Value]:
    derived = set(g.consts)
    for node in g.nodes:
        if node.inputs and all(v in derived for v in node.inputs):
            derived.update(node.outputs)
    return derived


def _layers(g: Graph) -> list[_Layer]:
    groups: dict[Value, list[Node]] = {}
    for node in g.nodes:
        if isinstance(node.op, GroupedMm):
            groups.setdefault(node.inputs[2], []).append(node)
    consts = _const_derived(g)
    layers = []
    for offsets, members in groups.items():
        cumsum = g.producer(offsets)
        if not (isinstance(cumsum, Node) and isinstance(cumsum.op, CumSum)):
            continue
        if cumsum.op.exclusive or cumsum.op.reverse:
            continue
        first, last = members[0], members[-1]
        region = frozenset(_cone(g, first, True) & _cone(g, last, False))
        inside = {v for n in region for v in n.outputs} | consts | {first.inputs[0], offsets}
        if all(v in inside for n in region for v in n.inputs) and all(
            n.inputs[1] in consts for n in members
        ):
            layers.append(_Layer(len(layers), first, last, region, cumsum.inputs[0]))
    return layers


@graph_pass("partition-experts")
def partition_experts(g: Graph, *, rank: int = 0, world_size: int = 1) -> Graph:
    """Place experts on `world_size` ranks (this graph is rank `rank`'s) with all-to-alls."""
    if not 0 <= rank < world_size:
        raise PassError(f"partition-experts: rank={rank} is not in [0, world_size={world_size})")
    layers = _layers(g)
    # keyed by first output: `rewrite` hands the rule new Node objects once inputs change
    by_output = {n.outputs[0]: layer for layer in layers for n in layer.region}
    splits: dict[int, tuple[Value, Value, Value]] = {}

    def rule(b: Builder, node: Node) -> Value | tuple[Value, ...] | None:
        layer = by_output.get(node.outputs[0])
        if layer is None:
            return None
        if node.outputs[0] is layer.first.outputs[0]:
            splits[layer.index] = _dispatch_splits(b, layer, world_size, node)
        send, recv, recv_counts = splits[layer.index]
        x = node.inputs[0]
        if node.outputs[0] is layer.first.outputs[0]:
            x = _all_to_all(b, x, send, recv, "dispatch", sympy.Symbol(
                f"recv{layer.index}", integer=True, nonnegative=True))  # fmt: skip
        if not isinstance(node.op, GroupedMm):
            return b.emit_multi(node.op, *node.inputs)
        out = _expert_mm(b, x, node.inputs[1], recv_counts, rank, world_size)
        if node.outputs[0] is layer.last.outputs[0]:
            rows = layer.first.inputs[0].type.shape[0]
            out = _all_to_all(b, out, recv, send, "combine", rows)
        return out

    return rewrite(g, rule)


def _dispatch_splits(b: Builder, layer: _Layer, world: int, node: Node) -> tuple[Value, ...]:
    experts = node.inputs[1].type.shape[0]
    if not isinstance(experts, int) or experts % world:
        raise PassError(
            f"partition-experts: {experts} experts (grouped_mm {node.inputs[1].type}) do not "
            f"split evenly over {world} ranks; use a world size that divides {experts}"
        )
    counts = b.emit(Cast(DType.int64), layer.counts)
    recv_counts = b.emit(ExchangeCounts(world), counts)
    per_rank = b.emit(Reshape((world, experts // world)), counts)
    send = b.emit(ReduceSum(axes=(1,)), per_rank)
    recv = b.emit(ReduceSum(axes=(1,)), recv_counts)
    return send, recv, recv_counts


def _all_to_all(b: Builder, x: Value, send: Value, recv: Value, phase: str,
                rows: object) -> Value:  # fmt: skip
    handle = b.emit(AllToAllStart(phase), x, send, recv)
    return b.emit(AllToAllWait(rows, x.type.shape[1], x.type.dtype), handle)  # type: ignore[arg-type]


def _expert_mm(b: Builder, x: Value, w: Value, recv_counts: Value, rank: int,
               world: int) -> Value:  # fmt: skip
    local = recv_counts.type.shape[1]
    mine = b.emit(Slice((0,), (rank * local,), ((rank + 1) * local,), (1,)), w)
    offsets = b.emit(CumSum(axis=0), b.emit(Reshape((-1,)), recv_counts))
    return b.emit(ExpertMm(int(local)), x, mine, offsets)
