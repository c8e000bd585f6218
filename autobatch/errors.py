"""The one error type of `ember.autobatch`: misuse of a block or of `run`."""

from __future__ import annotations

from ember.errors import EmberError

__all__ = ["AutobatchError"]


class AutobatchError(EmberError):
    """A block or `ab.run` was used in a way that cannot be batched (shapes, returns, replay)."""
