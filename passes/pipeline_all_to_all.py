"""Chunked, pipelined all-to-all (Lancet's forward schedule) for graphs with a token symbol.

    y = layer(x)                        x: f32[1, tokens, H]; layer holds all-to-all start/wait
=>  x_i = x[:, offset_i : offset_i + sizes[i]]           for every chunk i
    y = concat(layer(x_0), ..., layer(x_n-1))            layer specialised to tokens = sizes[i]
    ordered so chunk i's all-to-alls run while chunks i-1 and i+1 compute

The layer must act on each token independently (an MoE layer with its router, norms,
projections and residuals; not attention over the tokens). Every node that depends on x or on
the token count is copied per chunk with `tokens` set to the chunk's size (data-dependent dims,
such as rows received from other ranks, get a fresh symbol per chunk). Stage j of a chunk is
everything after its j-th all-to-all wait; the nodes are emitted in wavefront order: in slot t,
stage 0 of chunk t, then stage 1 of chunk t-1, and so on. An all-to-all started in stage j of
chunk i is thus waited for in stage j+1 one slot later, after the other chunks' computation of
the slot in between. `sizes=(n,)` only specialises tokens to n.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import sympy

from ember.distributed.ops import AllToAllWait
from ember.errors import PassError
from ember.ir import Builder, Graph, Node, TensorType, Value
from ember.ir.ops import Concat, Slice
from ember.passes.registry import graph_pass

__all__ = ["pipeline_all_to_all"]


def _token_axis(g: Graph) -> tuple[sympy.Symbol, int]:
    x = g.inputs[0] if g.inputs else None
    dims = [(i, d) for i, d in enumerate(x.type.shape) if isinstance(d, sympy.Expr)] if x else []
    if len(dims) != 1 or not dims[0][1].is_Symbol:
        raise PassError(
            f"pipeline-all-to-all: the first input must have exactly one symbolic dim (the "
            f"tokens), got {x.type if x else 'no inputs'}; import the model with a dynamic "
            "token dim"
        )
    return dims[0][1], dims[0][0]  # type: ignore[return-value]


def _subs(value: Any, env: dict[sympy.Symbol, Any]) -> Any:
    if isinstance(value, tuple):
        return tuple(_subs(v, env) for v in value)
    if isinstance(value, sympy.Expr) and value.free_symbols:
        out = value.subs(env)
        return int(out) if out.is_number else out
    return value


def _specialise(op: Any, env: dict[sympy.Symbol, Any]) -> Any:
    changes = {k: _subs(v, env) for k, v in op.attrs.items()}
    return dataclasses.replace(op, **{k: v for k, v in changes.items() if v is not op.attrs[k]})


def _symbols(node: Node) -> set[sympy.Symbol]:
    found: set[sympy.Symbol] = set()
    for v in node.outputs:
        found |= v.type.symbols
    for value in node.op.attrs.values():
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, sympy.Expr):
                found |= item.free_symbols  # type: ignore[arg-type]
    return found


def _stages(g: Graph, per_chunk: set[Node]) -> dict[Node, int]:
    stage: dict[Value, int] = {}
    out: dict[Node, int] = {}
    for node in g.nodes:
        if node not in per_chunk:
            continue
        s = max((stage.get(v, 0) for v in node.inputs), default=0)
        s += isinstance(node.op, AllToAllWait)
        out[node] = s
        stage.update(dict.fromkeys(node.outputs, s))
    return out


@graph_pass("pipeline-all-to-all")
def pipeline_all_to_all(g: Graph, *, sizes: tuple[int, ...] = (1,)) -> Graph:
    """Split the tokens into chunks of `sizes` and pipeline their all-to-alls."""
    token, axis = _token_axis(g)
    if not sizes or min(sizes) < 1:
        raise PassError(f"pipeline-all-to-all: chunk sizes must be positive, got {sizes}")
    x = g.inputs[0]
    shape = list(x.type.shape)
    shape[axis] = sum(sizes)
    new_x = Value(TensorType(shape, x.type.dtype), x.name)
    tainted: set[Value] = {x}
    per_chunk: set[Node] = set()
    for node in g.nodes:
        if token in _symbols(node) or any(v in tainted for v in node.inputs):
            per_chunk.add(node)
            tainted.update(node.outputs)
    stages = _stages(g, per_chunk)
    b = Builder(g.name)
    b.inputs = [new_x, *g.inputs[1:]]
    b.consts = dict(g.consts)
    shared = [n for n in g.nodes if n not in per_chunk]
    for node in shared:
        b.add_node(node)
    slots: dict[tuple[int, int], list[Node]] = {}
    chunk_values: list[dict[Value, Value]] = []
    offset = 0
    for i, size in enumerate(sizes):
        start = len(b.nodes)
        piece = b.emit(Slice((axis,), (offset,), (offset + size,), (1,)), new_x)
        offset += size
        env: dict[sympy.Symbol, Any] = {token: size}
        mapping = {x: piece}
        for node in g.nodes:
            if node not in per_chunk:
                continue
            for s in _symbols(node) - {token} - set(env):
                env[s] = sympy.Symbol(f"{s.name}_{i}", **s.assumptions0)
            outs = b.emit_multi(_specialise(node.op, env), *(mapping.get(v, v) for v in node.inputs),
                                loc=node.loc)  # fmt: skip
            mapping.update(zip(node.outputs, outs, strict=True))
            slots.setdefault((i, stages[node]), []).append(b.nodes[-1])
        slots.setdefault((i, 0), []).insert(0, b.nodes[start])
        chunk_values.append(mapping)
    b.nodes[len(shared) :] = _wavefront(slots, len(sizes), max(stages.values(), default=0))
    outputs = [_join(b, v, chunk_values, token, g) if v in tainted else v for v in g.outputs]
    b.output(*outputs, names=g.output_names)
    ranges = {k: r for k, r in g.symbol_ranges.items() if k != token.name}
    b.symbol_ranges = ranges
    return b.build()


def _wavefront(slots: dict[tuple[int, int], list[Node]], chunks: int, last: int) -> list[Node]:
    order: list[Node] = []
    for t in range(chunks + last):
        for stage in range(last + 1):
            order.extend(slots.get((t - stage, stage), []))
    return order


def _join(b: Builder, v: Value, chunk_values: list[dict[Value, Value]], token: sympy.Symbol,
          g: Graph) -> Value:  # fmt: skip
    axes = [i for i, d in enumerate(v.type.shape) if d == token]
    if len(axes) != 1 or v.type.symbols - {token}:
        raise PassError(
            f"pipeline-all-to-all: output {v.type} of graph {g.name!r} must have one dim equal "
            f"to the tokens ({token}) to be joined from chunks"
        )
    return b.emit(Concat(axes[0]), *(m[v] for m in chunk_values))
