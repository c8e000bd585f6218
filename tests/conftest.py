"""Fixtures shared by every test: a seeded `rng`; every pass is verified (EMBER_VERIFY=1); the
compile cache lives in a temporary directory, never the user's."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

os.environ.setdefault("EMBER_VERIFY", "1")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session", autouse=True)
def _temporary_compile_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Session-wide (so module-scoped fixtures and subprocesses see it too)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EMBER_CACHE_DIR", str(tmp_path_factory.mktemp("ember-cache")))
        yield
