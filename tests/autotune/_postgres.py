"""A throwaway PostgreSQL server for tests: `initdb` in a temporary directory, `pg_ctl start` on a
free loopback port, `pg_ctl stop` at the end. PostgreSQL refuses to run as root, so as root the
server runs as the `postgres` user (Debian's package creates it) through `runuser`.

`.ci/install-system-deps.sh` installs Debian's `postgresql`; without its binaries the tests that
need a server skip and say so.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["missing_reason", "postgres_server"]


def _bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def _as_server_user() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def missing_reason() -> str | None:
    """Why no server can be started here, or None when one can."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'ember[tune]')"
    if _bin_dir() is None:
        return "PostgreSQL binaries (initdb, pg_ctl) missing: apt-get install postgresql"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: PostgreSQL cannot run as root"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and no 'postgres' user exists to run the server"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yields the URL of its `postgres` database (user `ember`, trust auth)."""
    bin_dir = _bin_dir()
    assert bin_dir is not None, missing_reason()
    # not under pytest's tmp_path: its parents are private to root, and the server may not be root
    home = Path(tempfile.mkdtemp(prefix="ember-pg-"))
    data = home / "data"
    if os.geteuid() == 0:
        shutil.chown(home, "postgres", "postgres")
    run = _as_server_user()
    subprocess.run(
        [
            *run,
            bin_dir / "initdb",
            "-D",
            data,
            "-U",
            "ember",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={home} -c fsync=off"
    )
    subprocess.run(
        [*run, bin_dir / "pg_ctl", "-D", data, "-o", options, "-l", home / "log", "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://ember@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run, bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(home, ignore_errors=True)
