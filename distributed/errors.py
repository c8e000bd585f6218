"""The error a distributed run raises on every rank when a rank dies, times out or fails."""

from __future__ import annotations

from ember.errors import EmberError

__all__ = ["DistributedError"]


class DistributedError(EmberError):
    """A collective or a rank failed: names the rank, the collective and what to check."""
