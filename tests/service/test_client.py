"""The `--service` clients without a reachable service: `ember compile` builds from the local
cache with a warning; misuse is refused before anything is sent."""

from __future__ import annotations

import pytest

from ember.autotune.service.client import ServiceClient
from ember.cli import main
from ember.errors import ServiceError
from tests.service._processes import TOKEN, free_port


def test_compile_works_offline_from_the_cache(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EMBER_SERVICE_TOKEN", TOKEN)
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    library = tmp_path / "mlp.so"
    argv = ["compile", "tests.cli.tiny_models:mlp", "--service", down,
            "--tuning-records", str(tmp_path / "cache.db"), "-o", str(library)]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"warning: the tuning service at {down} cannot be reached" in err
    assert "using the records cached in" in err
    assert library.exists()


def test_tune_with_a_service_refuses_local_only_options(capsys):
    argv = ["tune", "tests.cli.tiny_models:mlp", "--trials", "2", "--service",
            "http://127.0.0.1:1", "--plot", "curve.png"]  # fmt: skip
    assert main(argv) == 2
    assert "drop --rpc-tracker/--plot/--compare" in capsys.readouterr().err


def test_service_urls_must_be_http():
    with pytest.raises(ServiceError, match="expected http://HOST:PORT"):
        ServiceClient("127.0.0.1:8765", TOKEN)
