"""Shared fixtures: isolated settings, DuckDB files, and a throw-away PostgreSQL server on 127.0.0.1."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(relative: str) -> Path:
    """A file under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"shared data file {path} is absent (tests that read real data need ../shared/data)")
    return path


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path, monkeypatch):
    """Every test gets its own data folder and no configuration file from the developer's machine."""
    from matlake.config import get_settings

    monkeypatch.setenv("MATLAKE_DATA_DIR", str(tmp_path / "matlake-data"))
    monkeypatch.setenv("MATLAKE_CONFIG", str(tmp_path / "matlake.toml"))
    monkeypatch.setenv("MATLAKE_LOCK_TIMEOUT_S", "2")
    monkeypatch.delenv("MATLAKE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def duckdb_url(tmp_path) -> str:
    return f"duckdb:///{tmp_path / 'test.duckdb'}"


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A PostgreSQL cluster in a temporary folder, owned by the `postgres` user when tests run as root."""

    def __init__(self) -> None:
        self.initdb = _pg_bin("initdb")
        self.pg_ctl = _pg_bin("pg_ctl")
        if not self.initdb or not self.pg_ctl:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self.root = Path(tempfile.mkdtemp(prefix="matlake-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.run_as = None
        if os.geteuid() == 0:
            self.run_as = "postgres"
            shutil.chown(self.root, user="postgres")
            os.chmod(self.root, 0o755)

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.run_as, "--", *args] if self.run_as else list(args)

    def start(self) -> None:
        subprocess.run(self._cmd(self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8"),
                       check=True, capture_output=True, timeout=120)
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(self._cmd(self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.root / "log"),
                                 "-w", "start"), check=True, capture_output=True, timeout=60)

    def stop(self) -> None:
        subprocess.run(self._cmd(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"),
                       capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        engine.dispose()
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server():
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'matlake[postgres]')")
    try:
        server = PostgresServer()
        server.start()
    except (RuntimeError, subprocess.SubprocessError, OSError, KeyError) as exc:
        pytest.skip(f"cannot start a PostgreSQL server here: {exc}")
    yield server
    server.stop()


_db_counter = iter(range(10**6))


@pytest.fixture
def postgres_url(postgres_server) -> str:
    return postgres_server.create_database(f"matlake_test_{os.getpid()}_{next(_db_counter)}")


@pytest.fixture(params=["duckdb", "postgres"])
def any_url(request, tmp_path) -> str:
    """The same test on an embedded DuckDB file and on a real PostgreSQL server."""
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'test.duckdb'}"
    return request.getfixturevalue("postgres_url")
