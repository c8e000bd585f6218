"""Model factories for `ember generate` in the tests and docs: tiny zoo models, random weights."""

from __future__ import annotations

from typing import Any


def llama() -> Any:
    """The zoo's tiny Llama (hidden 128, 2 layers)."""
    from examples.zoo import build

    return build("llama")[0]
