"""Fixtures shared by every test: a seeded `rng`; every pass is verified (EMBER_VERIFY=1)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("EMBER_VERIFY", "1")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
