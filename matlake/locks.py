"""One scheduled writer at a time per database, across processes.

A DuckDB file gets an exclusive ``fcntl.flock`` on a lock file beside it (``<db>.lock``); a PostgreSQL database gets
a session advisory lock. Both vanish with the process that holds them (no stale locks after a crash), and the flock
is inherited by a child that receives its file descriptor, so a worker keeps the database locked even if its parent
dies. The lock file holds a line of JSON naming the holder, so a process that is refused can say who holds it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from . import db
from .errors import ConfigError

_ADVISORY_KEY = int.from_bytes(hashlib.sha1(b"matlake.scheduler").digest()[:8], "big", signed=True)


def lock_path(database_file: Path) -> Path:
    """The lock file beside a DuckDB file: ``matlake.duckdb`` -> ``matlake.duckdb.lock``."""
    return database_file.with_name(database_file.name + ".lock")


class DatabaseLock:
    """An exclusive, non-reentrant lock on one database (DuckDB file or PostgreSQL database), held by one process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.file = db.duckdb_path(url)
        if db.is_duckdb(url) and self.file is None:
            raise ConfigError("an in-memory DuckDB database cannot be shared between processes: configure a file")
        self._fd: int | None = None
        self._pg: sa.Connection | None = None
        self._engine: sa.Engine | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None or self._pg is not None

    @property
    def fd(self) -> int | None:
        """The lock file's descriptor (DuckDB), to pass to a worker process that must keep the lock."""
        return self._fd

    def acquire(self, owner: str = "", *, timeout_s: float = 0.0) -> bool:
        """Try to take the lock, waiting up to ``timeout_s`` (0: try once); True when this process holds it."""
        if self.held:
            raise RuntimeError("this DatabaseLock is held already")
        deadline = time.monotonic() + timeout_s
        while True:
            if self._try(owner):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def release(self) -> None:
        if self._fd is not None:  # the holder line stays: a process refused a moment ago can still name us
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        if self._pg is not None:
            conn, self._pg = self._pg, None
            try:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_ADVISORY_KEY})")
            finally:
                conn.close()
                if self._engine is not None:
                    self._engine.dispose()

    def holder(self) -> str:
        """Who holds the lock, as far as can be told ("unknown" when the holder wrote nothing yet)."""
        if self.file is not None:
            info = self._holder_info()
            if not info:
                return "unknown"
            owner = info.get("owner") or "matlake"
            return f"PID {info.get('pid')} on {info.get('host')} ({owner}, since {info.get('since')})"
        engine = db.create_engine(self.url)
        try:
            with engine.connect() as conn:
                row = conn.execute(sa.text(
                    "SELECT a.pid, a.application_name, a.client_addr FROM pg_locks l JOIN pg_stat_activity a "
                    "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted AND l.classid::text::bigint = :hi "
                    "AND l.objid::text::bigint = :lo AND l.objsubid = 1 LIMIT 1"
                ), {"hi": (_ADVISORY_KEY >> 32) & 0xFFFFFFFF, "lo": _ADVISORY_KEY & 0xFFFFFFFF}).first()
        finally:
            engine.dispose()
        if row is None:
            return "unknown"
        return f"{row.application_name or 'a client'} (server PID {row.pid}, from {row.client_addr or 'local socket'})"

    def _holder_info(self, wait_s: float = 0.5) -> dict:
        """The holder's line; a holder that has just taken the lock may not have written it yet, so wait a little
        while the file is empty or still names this process (a stale line from our own last turn)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                info = json.loads(lock_path(self.file).read_text() or "{}")
            except (OSError, ValueError):
                info = {}
            fresh = info and not (info.get("pid") == os.getpid() and info.get("host") == socket.gethostname())
            if fresh or time.monotonic() >= deadline:
                return info if fresh else {}
            time.sleep(0.02)

    def __enter__(self) -> DatabaseLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- per backend --

    def _try(self, owner: str) -> bool:
        return self._try_file(owner) if self.file is not None else self._try_advisory(owner)

    def _try_file(self, owner: str) -> bool:
        path = lock_path(self.file)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot create lock file {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        line = (json.dumps(_holder_info(owner)) + "\n").encode()
        os.pwrite(fd, line, 0)  # overwrite, then cut: the file is never empty for a reader
        os.ftruncate(fd, len(line))
        self._fd = fd
        return True

    def _try_advisory(self, owner: str) -> bool:
        if self._engine is None:
            name = f"matlake-scheduler pid={os.getpid()} {owner}"[:63]
            self._engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT",
                                            connect_args={"application_name": name})
        conn = self._engine.connect()
        got = conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({_ADVISORY_KEY})").scalar()
        if got:
            self._pg = conn
            return True
        conn.close()
        return False


def _holder_info(owner: str) -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "owner": owner,
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
