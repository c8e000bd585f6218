"""The one place that reads ember's environment variables (all start with EMBER_)."""

from __future__ import annotations

import os

__all__ = ["dump_ir_dir", "verify_each_pass"]


def dump_ir_dir() -> str | None:
    """EMBER_DUMP_IR=dir: write the IR before and after each pass into dir."""
    return os.environ.get("EMBER_DUMP_IR") or None


def verify_each_pass() -> bool:
    """EMBER_VERIFY=1: run the IR verifier after every pass (tests always do)."""
    return os.environ.get("EMBER_VERIFY") == "1"
