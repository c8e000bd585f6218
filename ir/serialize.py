"""JSON (de)serialization of graphs: ops by registered name, attributes typed, weights base64."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import sympy

from ember.errors import EmberError
from ember.ir.graph import Graph, Loc, Node, Value
from ember.ir.op import OPS
from ember.ir.types import DType, TensorType, dim_str, sym

__all__ = ["from_json", "to_json"]

_FORMAT = "ember.graph/1"


def _enc(x: Any) -> Any:
    if isinstance(x, DType):
        return {"dtype": x.value}
    if isinstance(x, sympy.Expr):
        return {"dim": dim_str(x)}
    if isinstance(x, tuple):
        return [_enc(e) for e in x]
    if isinstance(x, float) and not np.isfinite(x):
        return {"float": repr(x)}
    return x


def _dec(x: Any, symbols: dict[str, sympy.Symbol]) -> Any:
    if isinstance(x, list):
        return tuple(_dec(e, symbols) for e in x)
    if isinstance(x, dict):
        if "dtype" in x:
            return DType(x["dtype"])
        if "dim" in x:
            return _parse_dim(x["dim"], symbols)
        return float(x["float"])
    return x


def _parse_dim(text: str | int, symbols: dict[str, sympy.Symbol]) -> int | sympy.Expr:
    if isinstance(text, int):
        return text
    return sympy.sympify(text, locals=symbols)


def to_json(g: Graph) -> str:
    """The graph as a JSON string (weights inline, base64)."""
    ids: dict[Value, int] = {}

    def ref(v: Value) -> int:
        return ids.setdefault(v, len(ids))

    def typ(t: TensorType) -> dict[str, Any]:
        return {
            "shape": [d if isinstance(d, int) else dim_str(d) for d in t.shape],
            "dtype": t.dtype.value,
        }

    values = [*g.inputs, *(v for n in g.nodes for v in n.outputs)]
    doc = {
        "format": _FORMAT,
        "name": g.name,
        "symbols": sorted({s.name for v in values for s in v.type.symbols}),
        "symbol_ranges": {k: list(r) for k, r in g.symbol_ranges.items()},
        "inputs": [{"id": ref(v), "name": v.name, **typ(v.type)} for v in g.inputs],
        "consts": [
            {
                "id": ref(v),
                "name": v.name,
                **typ(v.type),
                "data": base64.b64encode(np.ascontiguousarray(a).tobytes()).decode(),
            }
            for v, a in g.consts.items()
        ],
        "nodes": [
            {
                "op": n.op.name,
                "attrs": {k: _enc(a) for k, a in n.op.attrs.items()},
                "inputs": [ref(v) for v in n.inputs],
                "outputs": [{"id": ref(v), **typ(v.type)} for v in n.outputs],
                "loc": n.loc.text if n.loc else None,
            }
            for n in g.nodes
        ],
        "outputs": [ref(v) for v in g.outputs],
        "output_names": list(g.output_names),
    }
    return json.dumps(doc, sort_keys=True)


def from_json(text: str) -> Graph:
    """The graph that `to_json` wrote."""
    doc = json.loads(text)
    if doc.get("format") != _FORMAT:
        raise EmberError(f"not an ember graph (format {doc.get('format')!r}, expected {_FORMAT!r})")
    symbols = {name: sym(name) for name in doc["symbols"]}
    values: dict[int, Value] = {}

    def typ(d: dict[str, Any]) -> TensorType:
        return TensorType([_parse_dim(s, symbols) for s in d["shape"]], d["dtype"])

    inputs = tuple(values.setdefault(d["id"], Value(typ(d), d["name"])) for d in doc["inputs"])
    consts: dict[Value, np.ndarray] = {}
    for d in doc["consts"]:
        t = typ(d)
        v = values.setdefault(d["id"], Value(t, d["name"]))
        raw = np.frombuffer(base64.b64decode(d["data"]), dtype=t.dtype.numpy)
        consts[v] = raw.reshape([int(s) for s in t.shape]).copy()
    nodes = []
    for d in doc["nodes"]:
        if d["op"] not in OPS:
            raise EmberError(
                f"unknown op {d['op']!r} in serialized graph; is the ember version older?"
            )
        cls = OPS[d["op"]]
        op = cls(**{k: _dec(a, symbols) for k, a in d["attrs"].items()})
        outs = tuple(values.setdefault(o["id"], Value(typ(o))) for o in d["outputs"])
        ins = tuple(values[i] for i in d["inputs"])
        nodes.append(Node(op, ins, outs, Loc(d["loc"]) if d["loc"] else None))
    ranges = {k: (r[0], r[1]) for k, r in doc["symbol_ranges"].items()}
    outputs = tuple(values[i] for i in doc["outputs"])
    return Graph(
        inputs, tuple(nodes), outputs, consts, ranges, doc["name"], tuple(doc["output_names"])
    )
