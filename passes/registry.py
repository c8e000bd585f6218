"""The pass registry: passes are pure `Graph -> Graph` functions registered under CLI names."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ember.errors import PassError
from ember.ir import Graph

__all__ = ["PASSES", "GraphPass", "graph_pass", "parse_pass_spec"]

GraphPass = Callable[..., Graph]
PASSES: dict[str, GraphPass] = {}


def graph_pass(name: str) -> Callable[[GraphPass], GraphPass]:
    """Register a pass under `name` (a verb phrase, like `fold-constants`)."""

    def register(fn: GraphPass) -> GraphPass:
        if name in PASSES:
            raise TypeError(f"pass {name!r} is registered twice")
        PASSES[name] = fn
        fn.pass_name = name  # type: ignore[attr-defined]
        return fn

    return register


@dataclass(frozen=True)
class PassSpec:
    """A pass name with keyword options, from text like `fold-constants{max-elements=4096}`."""

    name: str
    options: dict[str, Any]


def parse_pass_spec(text: str) -> PassSpec:
    """Parse `name{key=value,...}`; option types come from the pass's signature."""
    name, _, rest = text.strip().partition("{")
    if name not in PASSES:
        raise PassError(f"unknown pass {name!r}; known passes: {', '.join(sorted(PASSES))}")
    params = inspect.signature(PASSES[name]).parameters
    options: dict[str, Any] = {}
    for item in filter(None, rest.rstrip("}").split(",")):
        key, _, value = item.partition("=")
        arg = key.strip().replace("-", "_")
        if arg not in params or params[arg].kind is not inspect.Parameter.KEYWORD_ONLY:
            allowed = [p.replace("_", "-") for p, v in params.items() if v.kind is v.KEYWORD_ONLY]
            raise PassError(f"pass {name!r} has no option {key.strip()!r}; options: {allowed}")
        default = params[arg].default
        options[arg] = (
            type(default)(value) if not isinstance(default, bool) else value.lower() == "true"
        )
    return PassSpec(name, options)
