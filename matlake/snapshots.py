"""Read-only snapshots of a DuckDB database, so notebooks can read while an ingest writes.

DuckDB lets no other process open a file, not even read-only, while one process writes it. After each successful
scheduled job (and when it starts) the scheduler copies the database, checkpointed and with no writer inside, to
``<db folder>/snapshots/<stem>-run<N>-<time>.duckdb`` (temp file + ``os.replace``), then swaps a small pointer file
``<stem>.current.json`` the same way. A reader follows the pointer and so sees either the old or the new snapshot,
never a half-written one; snapshot files are never written again once published. Older snapshots beyond ``keep``
are deleted; a reader that still has one open keeps reading it (POSIX unlink semantics).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from .errors import DatabaseLockedError

SNAPSHOT_DIR = "snapshots"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A published snapshot and what it was copied from."""

    file: str
    run_id: int
    published_at: str
    source: str
    source_mtime_ns: int
    source_size: int
    job: str | None = None
    incomplete_runs: tuple[int, ...] = ()

    @property
    def path(self) -> Path:
        return Path(self.source).parent / SNAPSHOT_DIR / self.file

    def matches(self, database: Path) -> bool:
        """True while the database file is byte-for-byte what was copied (same size and mtime, no pending WAL)."""
        try:
            st = database.stat()
        except OSError:
            return False
        if _wal(database).exists():
            return False
        return st.st_mtime_ns == self.source_mtime_ns and st.st_size == self.source_size

    def describe(self) -> str:
        return f"snapshot {self.file} (database as of ingest run {self.run_id}, published {self.published_at})"


def pointer_path(database: Path) -> Path:
    return database.parent / SNAPSHOT_DIR / f"{database.stem}.current.json"


def current(database: Path) -> Snapshot | None:
    """The newest published snapshot of ``database``, or None when there is none (or its file is gone)."""
    try:
        data = json.loads(pointer_path(database).read_text())
    except (OSError, ValueError):
        return None
    try:
        snap = Snapshot(**{**data, "incomplete_runs": tuple(data.get("incomplete_runs") or ())})
    except TypeError:
        return None
    return snap if snap.path.exists() else None


def publish(database: Path, *, job: str | None = None, keep: int = 3, timeout_s: float = 30.0,
            require_complete: bool = False) -> Snapshot | None:
    """Copy ``database`` into a new snapshot and point readers at it; None when there was nothing new to publish.

    The caller should hold the scheduler's :class:`~matlake.locks.DatabaseLock`. Here the file is opened read-write
    (waiting up to ``timeout_s`` for readers of the live file to let go), checkpointed so the main file holds every
    committed transaction, and copied while this connection keeps every other process out. With
    ``require_complete`` nothing is published while an ingest run is unfinished (running or interrupted).
    """
    database = Path(database).resolve()
    previous = current(database)
    if previous is not None and previous.matches(database):
        return None
    folder = database.parent / SNAPSHOT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    con = _open_writer(database, timeout_s)
    try:
        con.execute("CHECKPOINT")
        run_id, incomplete = _runs(con)
        if require_complete and incomplete:
            return None
        stamp = datetime.now(timezone.utc)
        name = f"{database.stem}-run{run_id}-{stamp.strftime('%Y%m%dT%H%M%S%fZ')}.duckdb"
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        shutil.copyfile(database, tmp)
        _fsync(tmp)
        os.replace(tmp, folder / name)
        st = database.stat()  # still inside the connection: nothing else can have changed the file
    finally:
        con.close()
    snap = Snapshot(file=name, run_id=run_id, published_at=stamp.isoformat(timespec="seconds"),
                    source=str(database), source_mtime_ns=st.st_mtime_ns, source_size=st.st_size, job=job,
                    incomplete_runs=tuple(incomplete))
    _write_pointer(database, snap)
    _prune(database, keep=max(1, keep), newest=name)
    return snap


def _open_writer(database: Path, timeout_s: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return duckdb.connect(str(database))
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                raise DatabaseLockedError(
                    f"cannot publish a snapshot of {database}: {str(exc).splitlines()[0]}"
                ) from None
            time.sleep(0.2)


def _runs(con: duckdb.DuckDBPyConnection) -> tuple[int, list[int]]:
    try:
        run_id = con.execute("SELECT coalesce(max(id), 0) FROM ingest_run").fetchall()[0][0]
        incomplete = [r[0] for r in con.execute(
            "SELECT id FROM ingest_run WHERE status IN ('running', 'interrupted') ORDER BY id").fetchall()]
    except duckdb.CatalogException:  # not migrated yet
        return 0, []
    return int(run_id), incomplete


def _write_pointer(database: Path, snap: Snapshot) -> None:
    path = pointer_path(database)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = asdict(snap)
    data["incomplete_runs"] = list(snap.incomplete_runs)
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    _fsync(tmp)
    os.replace(tmp, path)


def _prune(database: Path, *, keep: int, newest: str) -> None:
    folder = database.parent / SNAPSHOT_DIR
    files = sorted(folder.glob(f"{database.stem}-run*.duckdb"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in [f for f in files if f.name != newest][keep - 1:]:
        try:
            old.unlink()
        except OSError:
            pass


def _wal(database: Path) -> Path:
    return database.with_name(database.name + ".wal")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
