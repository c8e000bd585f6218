"""Matchers shared by passes: `linear_weight` finds `matmul(x, constant weight)` sites,
`shared_linear_inputs` the activations read only by such sites (q, k and v of one layer), and
`column_edits` folds a per-column transform of an activation into the ops producing it:

    x'[..., j] = x[..., perm[j]] * scale[j]

(AWQ's and SmoothQuant's 1 / s, Atom's channel reordering) costs nothing at run time when it can
be pushed back into weights: a previous matmul's weight columns, a LayerNorm's gamma and beta,
an RMSNorm's gamma (a `mul` by a constant vector), a bias. `column_edits` walks back from x
through per-channel elementwise ops and returns the edited constant arrays (same shapes), or
None when some path cannot absorb it (a residual stream, a reduction over channels, a value
with other users). Scaling stops at the first op that can absorb it; a permutation must reach
every path to the channels (through `silu`, `mul`, `add`...), except operands broadcast along
the channels (last dim 1), which it leaves unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ember.ir import Builder, Graph, Node, Value
from ember.ir.ops import BINARY_OPS, UNARY_OPS, Gelu, LayerNorm, MatMul, Reshape, Transpose
from ember.ir.types import DType

__all__ = [
    "ColumnTransform",
    "column_edits",
    "linear_rule",
    "linear_weight",
    "shared_linear_inputs",
]

# (builder, x as [M, K], weight [K, N], the weight's Value) -> y [M, N], or None to keep the node
LinearRewrite = Callable[[Builder, Value, np.ndarray, Value], "Value | None"]


def linear_weight(b: Builder | Graph, node: Node) -> np.ndarray | None:
    """W[K, N] when `node` is matmul(x[..., K], W) with W a float32 constant or the transpose
    of one (PyTorch's Linear); None otherwise. `b`: the builder or graph holding the node."""
    if not isinstance(node.op, MatMul):
        return None
    w = node.inputs[1]
    if w.type.rank != 2 or w.type.dtype is not DType.float32:
        return None
    consts = b.consts
    if w in consts:
        return consts[w]
    producer = b.producer(w)
    if producer is not None and isinstance(producer.op, Transpose):
        source = consts.get(producer.inputs[0])
        return None if source is None else source.T
    return None


def shared_linear_inputs(g: Graph) -> dict[Value, list[tuple[Node, np.ndarray]]]:
    """x => its users [(matmul node, W[K, N])], for each activation x (not a graph output)
    whose every user is a matmul with a constant weight, in graph order."""
    found: dict[Value, list[tuple[Node, np.ndarray]]] = {}
    for node in g.nodes:
        w = linear_weight(g, node)
        if w is not None and node.inputs[0] not in g.consts:
            found.setdefault(node.inputs[0], []).append((node, w))
    return {
        x: sites
        for x, sites in found.items()
        if len(g.users[x]) == len(sites) and x not in g.outputs
    }


def linear_rule(rewrite_linear: LinearRewrite) -> Callable[[Builder, Node], Value | None]:
    """A `rewrite` rule that flattens x[..., K] to [M, K], calls `rewrite_linear` on each
    matmul with a constant weight, and restores the leading dims of its [M, N] result.
    Matmuls reading the same x get the same flattened Value (to share work on it)."""

    flattened: dict[Value, Value] = {}  # one reshape per x: its matmuls see the same rows

    def rule(b: Builder, node: Node) -> Value | None:
        w = linear_weight(b, node)
        if w is None:
            return None
        x = node.inputs[0]
        k = x.type.shape[-1]
        if x.type.rank == 2:
            rows = x
        elif x in flattened:
            rows = flattened[x]
        else:
            rows = flattened[x] = b.emit(Reshape((-1, k)), x, loc=node.loc)
        y = rewrite_linear(b, rows, w, node.inputs[1])
        if y is None:
            return None
        if x.type.rank == 2:
            return y
        return b.emit(Reshape((*x.type.shape[:-1], w.shape[1])), y, loc=node.loc)

    return rule


Edits = dict[Value, np.ndarray]
_MUL, _ADD = BINARY_OPS["mul"], BINARY_OPS["add"]
_UNARY = (*UNARY_OPS.values(), Gelu)


@dataclass(frozen=True)
class ColumnTransform:
    """x'[..., j] = x[..., perm[j]] * scale[j]; either part may be None (identity)."""

    perm: np.ndarray | None = None
    scale: np.ndarray | None = None

    def apply(self, array: np.ndarray, axis: int = -1) -> np.ndarray:
        """The transform applied to a constant's channel axis."""
        out = array if self.perm is None else np.take(array, self.perm, axis=axis)
        if self.scale is None:
            return out
        shape = [1] * array.ndim
        shape[axis] = -1
        return (out * self.scale.reshape(shape)).astype(array.dtype)

    @property
    def without_scale(self) -> ColumnTransform | None:
        return None if self.perm is None else ColumnTransform(self.perm)


def column_edits(g: Graph, x: Value, transform: ColumnTransform) -> Edits | None:
    """The constants to replace (Value => new array) so that x becomes transform(x); None when
    it cannot be folded. x's own users are the caller's business (they all must want this);
    every other value on the way must have one user and not be a graph output."""
    edits: Edits = {}
    return edits if _push(g, x, transform, edits, root=True) else None


def _push(g: Graph, v: Value, t: ColumnTransform | None, edits: Edits, root: bool = False) -> bool:
    if t is None:
        return True
    if _broadcast_over_channels(v):  # the same for every channel: a permutation leaves it be
        return t.scale is None
    if v in g.outputs or (not root and len(g.users.get(v, ())) != 1):
        return False
    node = g.producer(v)
    if node is None:
        return False
    for kind, fold in _FOLDS.items():
        if isinstance(node.op, kind):
            return fold(g, node, t, edits)
    return False


def _broadcast_over_channels(v: Value) -> bool:
    return v.type.rank == 0 or v.type.shape[-1] == 1


def _edit_const(g: Graph, v: Value, t: ColumnTransform, edits: Edits, axis: int = -1) -> bool:
    """Apply t to a constant that only this path uses."""
    if v not in g.consts or len(g.users.get(v, ())) != 1 or v in edits:
        return False
    edits[v] = t.apply(g.consts[v], axis)
    return True


def _channel_vector(g: Graph, v: Value) -> bool:
    """A constant holding one value per channel (shape [..., 1, C]): a gamma or a bias."""
    return v in g.consts and v.type.rank >= 1 and all(d == 1 for d in v.type.shape[:-1])


def _fold_mul(g: Graph, node: Node, t: ColumnTransform, edits: Edits) -> bool:
    a, b = node.inputs
    for const, other in ((b, a), (a, b)):
        if _channel_vector(g, const) and not _broadcast_over_channels(const):
            return _edit_const(g, const, t, edits) and _push(g, other, t.without_scale, edits)
    # both operands vary: the scale goes into one of them, the permutation into both
    for scaled, other in ((b, a), (a, b)):
        trial = dict(edits)
        if _push(g, scaled, t, trial) and _push(g, other, t.without_scale, trial):
            edits.update(trial)
            return True
    return False


def _fold_add(g: Graph, node: Node, t: ColumnTransform, edits: Edits) -> bool:
    return all(
        _edit_const(g, v, t, edits) if _channel_vector(g, v) else _push(g, v, t, edits)
        for v in node.inputs
    )


def _fold_unary(g: Graph, node: Node, t: ColumnTransform, edits: Edits) -> bool:
    return t.scale is None and _push(g, node.inputs[0], t, edits)  # nonlinear: no scaling


def _fold_layer_norm(g: Graph, node: Node, t: ColumnTransform, edits: Edits) -> bool:
    _, weight, bias = node.inputs
    if t.perm is not None or node.op.axis not in (-1, node.inputs[0].type.rank - 1):
        return False  # the normalized input is not permuted: a permutation cannot be absorbed
    return _edit_const(g, weight, t, edits) and _edit_const(g, bias, t, edits)


def _fold_matmul(g: Graph, node: Node, t: ColumnTransform, edits: Edits) -> bool:
    w = node.inputs[1]
    if w.type.rank != 2:
        return False
    if w in g.consts:
        return _edit_const(g, w, t, edits, axis=1)
    producer = g.producer(w)
    if producer is None or not isinstance(producer.op, Transpose) or len(g.users[w]) != 1:
        return False
    return _edit_const(g, producer.inputs[0], t, edits, axis=0)  # Linear: W[out, in] rows


_FOLDS: dict[type, Callable[[Graph, Node, ColumnTransform, Edits], bool]] = {
    _MUL: _fold_mul,
    _ADD: _fold_add,
    LayerNorm: _fold_layer_norm,
    MatMul: _fold_matmul,
    **dict.fromkeys(_UNARY, _fold_unary),
}
