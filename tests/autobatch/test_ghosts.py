"""The ghost-op pass pads the shorter branch of an unbalanced if/else, once per function."""

from __future__ import annotations

from typing import Any

import torch

import ember.autobatch as ab
from ember.autobatch.ghosts import add_ghosts

one = ab.block(torch.nn.Identity(), name="one")
two = ab.block(torch.nn.Identity(), name="two")


def _unbalanced(x: Any) -> Any:
    if x.sum() > 0:  # noqa: SIM108  (an if statement: the ghost pass pads it)
        x = two(one(x))
    else:
        x = one(x)
    return x


def test_padded_function_is_made_once_per_function() -> None:
    padded = add_ghosts(_unbalanced)
    assert padded is not _unbalanced
    assert padded.__ab_ghosts__ == 1  # type: ignore[attr-defined]
    assert add_ghosts(_unbalanced) is padded  # cached: ab.run does not re-parse it every run
    x = torch.ones(1, 3)
    torch.testing.assert_close(padded(x), _unbalanced(x))  # outside ab.run: ghosts are no-ops
