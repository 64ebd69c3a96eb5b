"""The Python API for notebooks: ``matlake.connect()`` gives a DuckDB connection with every view registered.

DuckDB lets no other process open a file while one process writes it, and a reader that holds the file keeps
writers out. So a read-only ``connect()`` reads, in order of preference (``snapshot="auto"``):

1. the newest snapshot the scheduler published (:mod:`matlake.snapshots`) when the database has not changed since
   it was copied: the same data as the live file, and scheduled ingestion is never blocked by the notebook;
2. the live database file, read-only, when no process is writing it;
3. the newest snapshot, with a :class:`SnapshotWarning` naming its ingest run, when a writer holds the file.

``snapshot="always"`` reads only snapshots, ``"never"`` only the live file (waiting up to ``MATLAKE_LOCK_TIMEOUT_S``
for a writer). Either way a connection sees one consistent state: an ingest run is in it completely or not at all.
PostgreSQL serves readers and writers concurrently; use SQLAlchemy there (``connect()`` says so).
"""

from __future__ import annotations

import json
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa

from . import db, snapshots
from .config import get_settings
from .errors import ConfigError, DatabaseError, DatabaseLockedError, InputError

SnapshotMode = Literal["auto", "always", "never"]
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<prog>.+?) \(PID (?P<pid>\d+)\)")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SnapshotWarning(UserWarning):
    """The connection reads a snapshot that may be older than the live database."""


class LiveDatabaseWarning(UserWarning):
    """The connection holds the live DuckDB file, which keeps scheduled ingestion waiting until it is closed."""


@dataclass(frozen=True, slots=True)
class LakeSource:
    """What a connection reads: the live file or a snapshot (with the ingest run it contains)."""

    kind: Literal["database", "snapshot"]
    path: Path
    run_id: int | None = None
    published_at: str | None = None
    up_to_date: bool = True

    def __str__(self) -> str:
        if self.kind == "database":
            return f"database {self.path}"
        state = "up to date" if self.up_to_date else "may be older than the database"
        return f"snapshot {self.path.name} (as of ingest run {self.run_id}, published {self.published_at}; {state})"


def connect(read_only: bool = True, *, snapshot: SnapshotMode = "auto", url: str | None = None) -> LakeConnection:
    """A DuckDB connection to the configured database with the tables' views and ``features_<name>`` views.

    ``read_only=False`` opens the live file for writing (it waits for, and then blocks, every other process).
    """
    url = url or get_settings().resolved_database_url
    if not db.is_duckdb(url):
        raise ConfigError(
            "matlake.connect() opens the embedded DuckDB database, but the configured database is "
            f"{url.split('://')[0]}; PostgreSQL serves notebooks and ingestion at the same time, so read it "
            "with SQLAlchemy: `engine = matlake.db.create_engine()` then "
            "`pandas.read_sql(sql, engine)` (or psycopg directly)"
        )
    path = db.duckdb_path(url)
    if path is None:
        raise ConfigError("matlake.connect() needs a DuckDB file; an in-memory database would be empty")
    if snapshot not in ("auto", "always", "never"):
        raise InputError(f"snapshot={snapshot!r}: use 'auto', 'always' or 'never'")
    if not read_only:
        return _finish(_open_live(path, read_only=False, wait=True), LakeSource("database", path))
    if snapshot == "never":
        return _finish(_open_live(path, read_only=True, wait=True), LakeSource("database", path))
    snap = snapshots.current(path)
    if snap is not None and (snapshot == "always" or snap.matches(path)):
        con, snap = _open_snapshot(path, snap)
        if con is not None:
            up_to_date = snap.matches(path)
            if not up_to_date:
                warnings.warn(f"reading {snap.describe()}; the database has changed since", SnapshotWarning,
                              stacklevel=2)
            return _finish(con, _snapshot_source(snap, up_to_date))
    if snapshot == "always":
        raise DatabaseError(f"no snapshot of {path} has been published yet: `matlake scheduler run` publishes one "
                            "after each successful job")
    try:
        con = _open_live(path, read_only=True, wait=False)
    except DatabaseLockedError as exc:
        snap = snapshots.current(path)
        con, snap = _open_snapshot(path, snap) if snap is not None else (None, None)
        if con is None:
            raise DatabaseLockedError(f"{exc}; no snapshot has been published yet (the scheduler publishes one "
                                      "after each successful job)") from None
        warnings.warn(f"database {path} is being written by {_holder(exc)}; reading {snap.describe()}: what "
                      "the writer commits appears with the next snapshot", SnapshotWarning, stacklevel=2)
        return _finish(con, _snapshot_source(snap, False))
    if snap is not None:
        warnings.warn(f"reading the live database {path} (it changed since the last snapshot): scheduled ingestion "
                      "waits while this connection is open, so close() it when done", LiveDatabaseWarning,
                      stacklevel=2)
    return _finish(con, LakeSource("database", path))


class LakeConnection:
    """duckdb's own connection (``.duckdb``) plus helpers; every DuckDB method works on it directly.

    DuckDB's connection class has no Python constructor and takes no attributes, so the helpers live on this thin
    wrapper; ``con.sql``, ``con.execute``, ``con.table``... go straight to DuckDB (same speed, same objects).
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, source: LakeSource) -> None:
        self.duckdb = con
        self.source = source

    def __getattr__(self, name: str) -> Any:
        if name == "duckdb":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.duckdb, name)

    def __enter__(self) -> LakeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.duckdb.close()

    def __repr__(self) -> str:
        return f"<matlake connection to {self.source}>"

    def close(self) -> None:
        """Close now: while a connection to the live file is open, no ingest can write it."""
        self.duckdb.close()

    def to_pandas(self, sql: str, params: Any = None):
        """The result of ``sql`` as a pandas DataFrame."""
        return self.duckdb.execute(sql, params).df()

    def to_arrow(self, sql: str, params: Any = None) -> pa.Table:
        """The result of ``sql`` as an Arrow table."""
        return self.duckdb.sql(sql, params=params).to_arrow_table()

    def views(self) -> list[str]:
        """Every view this connection can query (the schema's views and the ``features_<name>`` views)."""
        rows = self.duckdb.execute("SELECT DISTINCT view_name FROM duckdb_views() WHERE NOT internal "
                                   "ORDER BY 1").fetchall()
        return [r[0] for r in rows]

    def structures(self, sql: str, params: Any = None) -> list:
        """pymatgen Structures from rows with JSON columns ``lattice``, ``species``, ``frac_coords`` (and optional
        ``site_properties``), e.g. ``SELECT * FROM structure``; rows with only a ``structure_id`` (such as
        ``structures_current``) are looked up in the ``structure`` table. Order follows the query."""
        rows = self._dicts(sql, params)
        if rows and "lattice" not in rows[0]:
            if "structure_id" not in rows[0]:
                raise InputError("structures(): the query needs columns lattice, species, frac_coords "
                                 "(table `structure`) or a structure_id column")
            ids = [r["structure_id"] for r in rows]
            found = {r["id"]: r for r in self._dicts(
                "SELECT id, lattice, species, frac_coords, site_properties FROM structure "
                "WHERE id IN (SELECT unnest($ids))", {"ids": ids})}
            missing = [i for i in ids if i not in found]
            if missing:
                raise InputError(f"structures(): structure ids {missing[:5]} are not in the structure table")
            rows = [found[i] for i in ids]
        return [_structure(r) for r in rows]

    def compositions(self, sql: str, params: Any = None) -> list:
        """pymatgen Compositions from a ``formula`` column, an ``amounts`` JSON column (table ``composition``) or a
        ``composition_id`` column; otherwise the first column is read as a formula."""
        from pymatgen.core import Composition

        rows = self._dicts(sql, params)
        if not rows:
            return []
        columns = list(rows[0])
        if "formula" in columns:
            return [Composition(r["formula"]) for r in rows]
        if "amounts" in columns:
            return [Composition(_amounts(r)) for r in rows]
        if "composition_id" in columns:
            ids = [r["composition_id"] for r in rows]
            found = dict(self.duckdb.execute(
                "SELECT id, formula FROM composition WHERE id IN (SELECT unnest($ids))", {"ids": ids}).fetchall())
            return [Composition(found[i]) for i in ids]
        return [Composition(r[columns[0]]) for r in rows]

    def _dicts(self, sql: str, params: Any) -> list[dict[str, Any]]:
        cursor = self.duckdb.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


# ---- opening ---------------------------------------------------------------------------------------------------


def _open_live(path: Path, *, read_only: bool, wait: bool) -> duckdb.DuckDBPyConnection:
    if read_only and not path.exists():
        raise DatabaseError(f"database {path} does not exist: run `matlake init` or `matlake demo` first")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + (get_settings().lock_timeout_s if wait else 0.0)
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            text = str(exc)
            if "lock" not in text.lower():
                raise DatabaseError(f"cannot open database {path}: {text.splitlines()[0]}") from None
            if time.monotonic() >= deadline:
                match = _LOCK_HOLDER.search(text)
                holder = f"{match['prog']} (PID {match['pid']})" if match else "another process"
                raise DatabaseLockedError(f"database {path} is in use by {holder}: DuckDB lets one process write a "
                                          "file at a time") from None
            time.sleep(0.2)


def _open_snapshot(database: Path, snap: snapshots.Snapshot):
    """Open ``snap`` read-only; if a newer publication pruned it meanwhile, follow the pointer again."""
    for _ in range(5):
        try:
            return duckdb.connect(str(snap.path), read_only=True), snap
        except duckdb.Error:
            newer = snapshots.current(database)
            if newer is None or newer.file == snap.file:
                break
            snap = newer
    return None, None


def _snapshot_source(snap: snapshots.Snapshot, up_to_date: bool) -> LakeSource:
    return LakeSource("snapshot", snap.path, snap.run_id, snap.published_at, up_to_date)


def _holder(exc: Exception) -> str:
    text = str(exc)
    return text.split(" is in use by ", 1)[1].split(":")[0] if " is in use by " in text else "another process"


def _finish(con: duckdb.DuckDBPyConnection, source: LakeSource) -> LakeConnection:
    """Register ``features_<name>`` TEMP views over the newest version of each feature set's partitions."""
    try:
        _register_feature_views(con)
    except Exception:
        con.close()
        raise
    return LakeConnection(con, source)


def _register_feature_views(con: duckdb.DuckDBPyConnection) -> None:
    try:
        rows = con.execute(
            "SELECT name, partition, version, files FROM feature_set WHERE status = 'ready' "
            "ORDER BY name, partition, version DESC").fetchall()
    except duckdb.CatalogException:  # a database without the schema (not migrated): nothing to register
        return
    newest: dict[tuple[str, str], list[str]] = {}
    for name, partition, _, files in rows:
        newest.setdefault((name, partition), [f["path"] for f in _json(files) or []])
    by_name: dict[str, list[str]] = {}
    for (name, _), paths in newest.items():
        by_name.setdefault(name, []).extend(paths)
    for name, paths in by_name.items():
        if not _IDENTIFIER.match(name) or not paths:
            continue
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            warnings.warn(f"features_{name} is not available: {missing[0]} is missing", SnapshotWarning,
                          stacklevel=3)
            continue
        listing = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
        con.execute(f'CREATE OR REPLACE TEMP VIEW "features_{name}" AS '
                    f"SELECT * FROM read_parquet([{listing}], union_by_name = true)")


# ---- rows to pymatgen ------------------------------------------------------------------------------------------


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _amounts(row: dict[str, Any]) -> dict[str, float]:
    amounts = _json(row["amounts"])
    if isinstance(amounts, dict):
        return amounts
    return dict(zip(_json(row["elements"]), amounts))


def _structure(row: dict[str, Any]):
    from pymatgen.core import Species, Structure

    props = dict(_json(row.get("site_properties")) or {})
    oxidation = props.pop("oxidation_states", None)
    species = []
    for i, sp in enumerate(_json(row["species"])):
        oxi = oxidation[i] if oxidation else {}
        if isinstance(sp, str):
            species.append(Species(sp, oxi[sp]) if sp in oxi else sp)
        else:
            species.append({(Species(el, oxi[el]) if el in oxi else el): occ for el, occ in sp.items()})
    return Structure(_json(row["lattice"]), species, _json(row["frac_coords"]), site_properties=props or None)
