"""The one place that reads ember's environment variables (all start with EMBER_, plus the
XDG_CACHE_HOME default that EMBER_CACHE_DIR overrides)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "cache_dir",
    "cache_enabled",
    "dump_ir_dir",
    "service_token",
    "tuning_db_path",
    "verify_each_pass",
]


def dump_ir_dir() -> str | None:
    """EMBER_DUMP_IR=dir: write the IR before and after each pass into dir."""
    return os.environ.get("EMBER_DUMP_IR") or None


def verify_each_pass() -> bool:
    """EMBER_VERIFY=1: run the IR verifier after every pass (tests always do)."""
    return os.environ.get("EMBER_VERIFY") == "1"


def cache_enabled() -> bool:
    """EMBER_CACHE=0: never read or write the on-disk compile cache."""
    return os.environ.get("EMBER_CACHE", "1") != "0"


def cache_dir() -> Path:
    """EMBER_CACHE_DIR, else $XDG_CACHE_HOME/ember, else ~/.cache/ember."""
    explicit = os.environ.get("EMBER_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ember"


def tuning_db_path() -> str:
    """EMBER_TUNING_DB (a file path, sqlite:///path or postgresql://...), else
    tuning.db in `cache_dir()`."""
    return os.environ.get("EMBER_TUNING_DB") or str(cache_dir() / "tuning.db")


def service_token() -> str | None:
    """EMBER_SERVICE_TOKEN: the bearer token `ember serve` accepts and `--service` clients send."""
    return os.environ.get("EMBER_SERVICE_TOKEN") or None
