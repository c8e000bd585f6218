"""Exported tiny models shared by the runtime tests (built once per session: each export links)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ember.api import compile_graph
from tests.runtime._models import two_input_graph


@pytest.fixture(scope="session")
def tiny_so(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("artifact") / "tiny.so"
    compile_graph(two_input_graph()).export(path)
    return path
