"""ONNX control flow whose shape is known at import time: `If` with a constant condition becomes
the taken branch, `Loop` with a constant trip count and `Scan` over a static axis are unrolled.

Subgraph bodies see the enclosing graph's values; `RunBody` converts one body's nodes into a
scope (a name -> Value dict) and is supplied by the importer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ember.errors import UnsupportedError
from ember.frontend.onnx.context import Context, OnnxNode
from ember.frontend.onnx.shape import reshape
from ember.ir import Value, ops

__all__ = ["CONTROL_FLOW", "RunBody"]

RunBody = Callable[[Context, Any, dict[str, Value]], None]
_MAX_UNROLL = 1024


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _outputs(node: Any, names: dict[str, Value], values: list[Value]) -> None:
    for name, v in zip(node.output, values, strict=False):
        if name:
            names[name] = v


def inline_if(ctx: Context, node: Any, label: str, inputs: list[Any],
              names: dict[str, Value], run: RunBody) -> None:  # fmt: skip
    """The branch chosen by the constant condition, converted in place of the If."""
    attrs = _attrs(node)
    onnx_node = OnnxNode(node.op_type, label, tuple(inputs), attrs, len(node.output))
    cond = ctx.static(inputs[0] if inputs else None, onnx_node, "cond")
    branch = attrs["then_branch" if bool(cond.reshape(-1)[0]) else "else_branch"]
    scope = dict(names)
    run(ctx, branch, scope)
    _outputs(node, names, [scope[o.name] for o in branch.output])


def _stack(ctx: Context, values: list[Value], axis: int) -> Value:
    rank = values[0].type.rank + 1
    axis %= rank
    parts = [reshape(ctx, v, (*v.type.shape[:axis], 1, *v.type.shape[axis:])) for v in values]
    return parts[0] if len(parts) == 1 else ctx.emit(ops.Concat(axis), *parts)


def unroll_loop(ctx: Context, node: Any, label: str, inputs: list[Any],
                names: dict[str, Value], run: RunBody) -> None:  # fmt: skip
    """Loop with a constant trip count (and a condition that stays constant) as straight code."""
    attrs = _attrs(node)
    onnx_node = OnnxNode(node.op_type, label, tuple(inputs), attrs, len(node.output))
    body = attrs["body"]
    trip = int(ctx.static(inputs[0] if inputs else None, onnx_node, "M").reshape(-1)[0])
    running = inputs[1] is None or bool(ctx.static(inputs[1], onnx_node, "cond").reshape(-1)[0])
    if trip > _MAX_UNROLL:
        raise onnx_node.unsupported("M", f"{trip} (unrolling stops at {_MAX_UNROLL})")
    carried: list[Value] = list(inputs[2:])
    scans: list[list[Value]] = [[] for _ in body.output[1 + len(carried) :]]
    for i in range(trip if running else 0):
        scope = dict(names)
        scope[body.input[0].name] = ctx.const(np.array(i, dtype=np.int64))
        scope[body.input[1].name] = ctx.const(np.array(True))
        scope.update((b.name, v) for b, v in zip(body.input[2:], carried, strict=True))
        run(ctx, body, scope)
        carried = [scope[o.name] for o in body.output[1 : 1 + len(carried)]]
        for values, o in zip(scans, body.output[1 + len(carried) :], strict=True):
            values.append(scope[o.name])
        keep_going = ctx.array(scope[body.output[0].name])
        if keep_going is None:
            raise UnsupportedError(f"Loop node {label!r}: its condition depends on run-time data")
        if not bool(np.asarray(keep_going).reshape(-1)[0]):
            break
    if scans and not scans[0]:
        raise UnsupportedError(f"Loop node {label!r} runs no iteration: its scan outputs are empty")
    _outputs(node, names, carried + [_stack(ctx, values, 0) for values in scans])


def unroll_scan(ctx: Context, node: Any, label: str, inputs: list[Any],
                names: dict[str, Value], run: RunBody) -> None:  # fmt: skip
    """Scan (opset >= 9) over its static scan axis as straight code."""
    attrs = _attrs(node)
    body, count = attrs["body"], int(attrs["num_scan_inputs"])
    states: list[Value] = list(inputs[: len(inputs) - count])
    xs: list[Value] = list(inputs[len(inputs) - count :])
    in_axes = list(attrs.get("scan_input_axes", [0] * count))
    in_dirs = list(attrs.get("scan_input_directions", [0] * count))
    outs = len(body.output) - len(states)
    out_axes = list(attrs.get("scan_output_axes", [0] * outs))
    out_dirs = list(attrs.get("scan_output_directions", [0] * outs))
    axes = [a % x.type.rank for a, x in zip(in_axes, xs, strict=True)]
    length = xs[0].type.shape[axes[0]]
    if not isinstance(length, int):
        raise UnsupportedError(f"Scan node {label!r}: the scan axis has symbolic size {length}")
    results: list[list[Value]] = [[] for _ in range(outs)]
    for t in range(length):
        scope = dict(names)
        scope.update((b.name, v) for b, v in zip(body.input, states, strict=False))
        for b, x, axis, reverse in zip(body.input[len(states) :], xs, axes, in_dirs, strict=True):
            i = length - 1 - t if reverse else t
            part = ctx.emit(ops.Slice((axis,), (i,), (i + 1,), (1,)), x)
            scope[b.name] = reshape(ctx, part, x.type.shape[:axis] + x.type.shape[axis + 1 :])
        run(ctx, body, scope)
        states = [scope[o.name] for o in body.output[: len(states)]]
        for values, o in zip(results, body.output[len(states) :], strict=True):
            values.append(scope[o.name])
    stacked = [
        _stack(ctx, values[::-1] if reverse else values, axis)
        for values, axis, reverse in zip(results, out_axes, out_dirs, strict=True)
    ]
    _outputs(node, names, states + stacked)


CONTROL_FLOW = {"If": inline_if, "Loop": unroll_loop, "Scan": unroll_scan}
