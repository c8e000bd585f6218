"""ONNX RNN, GRU and LSTM, unrolled over their static sequence length into matmuls and
elementwise gates (one step per time step and direction)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ember.frontend.onnx.context import Context, Converter, OnnxNode
from ember.frontend.onnx.shape import reshape
from ember.ir import Value, ops

__all__ = ["CONVERTERS"]

_Activation = Callable[[Context, Value], Value]
_ACTIVATIONS: dict[str, _Activation] = {
    "sigmoid": lambda ctx, x: ctx.emit(ops.Sigmoid(), x),
    "tanh": lambda ctx, x: ctx.emit(ops.Tanh(), x),
    "relu": lambda ctx, x: ctx.emit(ops.Relu(), x),
}
_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
_DEFAULTS = {"RNN": ("Tanh",), "GRU": ("Sigmoid", "Tanh"), "LSTM": ("Sigmoid", "Tanh", "Tanh")}


@dataclass
class _Cell:
    """One direction's weights: input projection of every step, recurrence, peepholes."""

    ctx: Context
    node: OnnxNode
    projected: Value  # [seq, batch, gates * hidden]: x @ W^T + Wb (+ Rb unless kept apart)
    recurrence: Value  # [hidden, gates * hidden]: R^T
    recurrent_bias: Value | None  # GRU with linear_before_reset keeps Rb for the h gate
    peepholes: list[Value]  # LSTM: P split into i, o, f
    acts: list[_Activation]
    hidden: int
    clip: float | None

    def gate(self, x: Value, k: int) -> Value:
        h = self.hidden
        return self.ctx.emit(ops.Slice((1,), (k * h,), ((k + 1) * h,), (1,)), x)

    def squash(self, i: int, x: Value) -> Value:
        if self.clip is not None:
            low, high = (
                self.ctx.scalar(-self.clip, x.type.dtype),
                self.ctx.scalar(self.clip, x.type.dtype),
            )
            x = self.ctx.emit(ops.Minimum(), self.ctx.emit(ops.Maximum(), x, low), high)
        return self.acts[i](self.ctx, x)


def _emit(ctx: Context, op: type[ops.BinaryOp], x: Value, y: Value) -> Value:
    return ctx.emit(op(), x, y)


def _rnn_step(cell: _Cell, xw: Value, h: Value, c: Value | None) -> tuple[Value, Value | None]:
    ctx = cell.ctx
    pre = _emit(ctx, ops.Add, xw, ctx.emit(ops.MatMul(), h, cell.recurrence))
    return cell.squash(0, pre), None


def _gru_step(cell: _Cell, xw: Value, h: Value, c: Value | None) -> tuple[Value, Value | None]:
    ctx = cell.ctx
    hr = ctx.emit(ops.MatMul(), h, cell.recurrence)
    z = cell.squash(0, _emit(ctx, ops.Add, cell.gate(xw, 0), cell.gate(hr, 0)))
    r = cell.squash(0, _emit(ctx, ops.Add, cell.gate(xw, 1), cell.gate(hr, 1)))
    if cell.recurrent_bias is None:  # linear_before_reset=0: reset h before the matmul
        rh = _emit(ctx, ops.Mul, r, h)
        recurrence_h = cell.gate(cell.recurrence, 2)
        candidate = ctx.emit(ops.MatMul(), rh, recurrence_h)
    else:
        candidate = _emit(
            ctx, ops.Mul, r, _emit(ctx, ops.Add, cell.gate(hr, 2), cell.recurrent_bias)
        )
    hh = cell.squash(1, _emit(ctx, ops.Add, cell.gate(xw, 2), candidate))
    one = ctx.scalar(1, h.type.dtype)
    keep = _emit(ctx, ops.Mul, z, h)
    return _emit(ctx, ops.Add, _emit(ctx, ops.Mul, _emit(ctx, ops.Sub, one, z), hh), keep), None


def _lstm_step(cell: _Cell, xw: Value, h: Value, c: Value | None) -> tuple[Value, Value | None]:
    ctx = cell.ctx
    assert c is not None
    pre = _emit(ctx, ops.Add, xw, ctx.emit(ops.MatMul(), h, cell.recurrence))
    gi, go, gf, gc = (cell.gate(pre, k) for k in range(4))
    if cell.peepholes:
        gi = _emit(ctx, ops.Add, gi, _emit(ctx, ops.Mul, cell.peepholes[0], c))
        gf = _emit(ctx, ops.Add, gf, _emit(ctx, ops.Mul, cell.peepholes[2], c))
    i, f = cell.squash(0, gi), cell.squash(0, gf)
    c_new = _emit(
        ctx, ops.Add, _emit(ctx, ops.Mul, f, c), _emit(ctx, ops.Mul, i, cell.squash(1, gc))
    )
    if cell.peepholes:
        go = _emit(ctx, ops.Add, go, _emit(ctx, ops.Mul, cell.peepholes[1], c_new))
    o = cell.squash(0, go)
    return _emit(ctx, ops.Mul, o, cell.acts[2](ctx, c_new)), c_new


_STEPS = {"RNN": _rnn_step, "GRU": _gru_step, "LSTM": _lstm_step}


def _index(ctx: Context, v: Value, i: int) -> Value:
    """v[i] along axis 0, the axis dropped."""
    part = ctx.emit(ops.Slice((0,), (i,), (i + 1,), (1,)), v)
    return reshape(ctx, part, v.type.shape[1:])


def _activations(node: OnnxNode, direction: int, count: int) -> list[_Activation]:
    given = [n.decode() if isinstance(n, bytes) else n for n in node.attr("activations", ())]
    names = given or list(_DEFAULTS[node.op_type]) * (direction + 1)
    if node.attr("activation_alpha") or node.attr("activation_beta"):
        raise node.unsupported("activation_alpha/beta", node.attr("activation_alpha"))
    chosen = names[direction * count : (direction + 1) * count]
    unknown = [n for n in chosen if n.lower() not in _ACTIVATIONS]
    if unknown:
        raise node.unsupported("activations", unknown)
    return [_ACTIVATIONS[n.lower()] for n in chosen]


def _cell(ctx: Context, node: OnnxNode, x: Value, d: int, hidden: int) -> _Cell:
    gates = _GATES[node.op_type]
    w, r, b, p = (node.input(i) for i in (1, 2, 3, 7))
    if w is None or r is None:
        raise node.unsupported("inputs", "W and R are required")
    wt = ctx.emit(ops.Transpose((1, 0)), _index(ctx, w, d))
    projected = ctx.emit(ops.MatMul(), x, wt)
    recurrent_bias = None
    if b is not None:
        bias = _index(ctx, b, d)
        wb = ctx.emit(ops.Slice((0,), (0,), (gates * hidden,), (1,)), bias)
        rb = ctx.emit(ops.Slice((0,), (gates * hidden,), (2 * gates * hidden,), (1,)), bias)
        if node.op_type == "GRU" and node.attr("linear_before_reset", 0):
            wzr = ctx.emit(ops.Slice((0,), (0,), (2 * hidden,), (1,)), rb)
            zero = ctx.const(np.zeros(hidden, dtype=x.type.dtype.numpy))
            recurrent_bias = ctx.emit(ops.Slice((0,), (2 * hidden,), (3 * hidden,), (1,)), rb)
            rb = ctx.emit(ops.Concat(0), wzr, zero)
        projected = _emit(ctx, ops.Add, projected, _emit(ctx, ops.Add, wb, rb))
    elif node.op_type == "GRU" and node.attr("linear_before_reset", 0):
        recurrent_bias = ctx.const(np.zeros(hidden, dtype=x.type.dtype.numpy))
    peepholes = []
    if p is not None:
        pd = _index(ctx, p, d)
        peepholes = [ctx.emit(ops.Slice((0,), (k * hidden,), ((k + 1) * hidden,), (1,)), pd)
                     for k in range(3)]  # fmt: skip
    count = len(_DEFAULTS[node.op_type])
    clip = node.attr("clip")
    return _Cell(ctx, node, projected, ctx.emit(ops.Transpose((1, 0)), _index(ctx, r, d)),
                 recurrent_bias, peepholes, _activations(node, d, count), hidden,
                 None if clip is None else float(clip))  # fmt: skip


def _initial(ctx: Context, v: Value | None, d: int, batch: int, hidden: int, like: Value) -> Value:
    if v is None:
        return ctx.const(np.zeros((batch, hidden), dtype=like.type.dtype.numpy))
    return _index(ctx, v, d)


def _run_direction(
    cell: _Cell, d: int, reverse: bool, lengths: np.ndarray | None, batch: int
) -> tuple[list[Value], Value, Value | None]:
    ctx, node, hidden = cell.ctx, cell.node, cell.hidden
    seq = int(cell.projected.type.shape[0])
    h = _initial(ctx, node.input(5), d, batch, hidden, cell.projected)
    c = None
    if node.op_type == "LSTM":
        c = _initial(ctx, node.input(6), d, batch, hidden, cell.projected)
    outputs: list[Value] = [h] * seq
    for t in reversed(range(seq)) if reverse else range(seq):
        h_new, c_new = _STEPS[node.op_type](cell, _index(ctx, cell.projected, t), h, c)
        if lengths is not None and not (lengths > t).all():
            live = ctx.const((lengths > t).reshape(batch, 1))
            zeros = ctx.const(np.zeros((batch, hidden), dtype=h.type.dtype.numpy))
            outputs[t] = ctx.emit(ops.Where(), live, h_new, zeros)
            h = ctx.emit(ops.Where(), live, h_new, h)
            c = None if c is None or c_new is None else ctx.emit(ops.Where(), live, c_new, c)
        else:
            outputs[t], h, c = h_new, h_new, c_new
    return outputs, h, c


def _recurrent(ctx: Context, node: OnnxNode) -> Sequence[Value]:
    x = node.input(0)
    if x is None or not x.type.is_static:
        raise node.unsupported("X", None if x is None else str(x.type))
    layout = node.attr("layout", 0)
    if layout:
        x = ctx.emit(ops.Transpose((1, 0, 2)), x)
    if node.op_type == "LSTM" and node.attr("input_forget", 0):
        raise node.unsupported("input_forget", 1)
    seq, batch = int(x.type.shape[0]), int(x.type.shape[1])
    hidden = int(node.attr("hidden_size"))
    direction = node.attr("direction", "forward")
    lens = node.input(4)
    lengths = None if lens is None else ctx.static(lens, node, "sequence_lens").astype(np.int64)
    if lengths is not None and direction != "forward" and (lengths < seq).any():
        raise node.unsupported("sequence_lens", f"{lengths.tolist()} with direction={direction}")
    reverses = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}[direction]
    ys, hs, cs = [], [], []
    for d, reverse in enumerate(reverses):
        outputs, h, c = _run_direction(_cell(ctx, node, x, d, hidden), d, reverse, lengths, batch)
        ys.append(
            ctx.emit(ops.Concat(0), *[reshape(ctx, o, (1, 1, batch, hidden)) for o in outputs])
        )
        hs.append(reshape(ctx, h, (1, batch, hidden)))
        if c is not None:
            cs.append(reshape(ctx, c, (1, batch, hidden)))
    results = [ctx.emit(ops.Concat(1), *ys), ctx.emit(ops.Concat(0), *hs)]
    if cs:
        results.append(ctx.emit(ops.Concat(0), *cs))
    if layout:  # [seq, dirs, batch, hidden] -> [batch, seq, dirs, hidden]; states batch-first
        results = [ctx.emit(ops.Transpose((2, 0, 1, 3)), results[0]),
                   *(ctx.emit(ops.Transpose((1, 0, 2)), s) for s in results[1:])]  # fmt: skip
    return results[: node.num_outputs]


CONVERTERS: dict[str, Converter] = {"RNN": _recurrent, "GRU": _recurrent, "LSTM": _recurrent}
