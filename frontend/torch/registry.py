"""The converter table: torch op (OpOverload, its packet, or a custom op's qualified name) ->
a function emitting ember IR."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["CONVERTERS", "converter", "lookup", "op_name"]

Converter = Callable[..., Any]
CONVERTERS: dict[Any, Converter] = {}


def converter(*targets: Any) -> Callable[[Converter], Converter]:
    """Register `fn(cx, *args, **kwargs)` for each target; returns a Value, a tuple, or None.

    A target is an aten OpOverload (`aten.add.Tensor`), an OpOverloadPacket (every overload),
    a Python callable (`operator.getitem`), or a custom op's qualified name
    (`"transformers::grouped_mm_fallback"`).
    """

    def register(fn: Converter) -> Converter:
        for target in targets:
            if target in CONVERTERS:
                raise TypeError(f"two converters for {target}")
            CONVERTERS[target] = fn
        return fn

    return register


def lookup(target: Any) -> Converter | None:
    for key in (target, getattr(target, "overloadpacket", None), _qualified(target)):
        if key is not None and key in CONVERTERS:
            return CONVERTERS[key]
    return None


def _qualified(target: Any) -> str | None:
    name = getattr(target, "name", None)
    return name().split(".")[0] if callable(name) else None


def op_name(target: Any) -> str:
    """`aten.add` for an overload or packet; the qualified name for anything else."""
    packet = getattr(target, "overloadpacket", target)
    text = str(packet)
    return text if "." in text and "<" not in text else getattr(target, "__name__", text)
