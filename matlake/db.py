"""Engines, schema migrations, lock handling and bulk loads for DuckDB files and PostgreSQL servers.

DuckDB allows one process to hold a file while it is written, so writers open it with a bounded wait and a clear
message naming the holder; readers open it read-only. Bulk loads go through Arrow (DuckDB) or COPY (PostgreSQL).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from .config import get_settings
from .errors import DatabaseError, DatabaseLockedError, SchemaVersionError

_NAMED_PARAM = re.compile(r"(?<![:\w]):(?=[A-Za-z_])")
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<prog>.+?) \(PID (?P<pid>\d+)\)")


def is_duckdb(url_or_engine: str | sa.Engine | sa.Connection) -> bool:
    name = url_or_engine if isinstance(url_or_engine, str) else url_or_engine.dialect.name
    return str(name).startswith("duckdb")


def duckdb_path(url: str) -> Path | None:
    """The file behind a ``duckdb:///path`` URL; None for in-memory databases or other dialects."""
    if not is_duckdb(url):
        return None
    path = sa.engine.make_url(url).database
    return None if not path or path == ":memory:" else Path(path)


def _friendly_open_error(url: str, exc: Exception) -> DatabaseError:
    text = str(getattr(exc, "orig", exc) or exc)
    match = _LOCK_HOLDER.search(text)
    if match or "Could not set lock" in text:
        holder = f"{match['prog']} (PID {match['pid']})" if match else "another process"
        return DatabaseLockedError(
            f"database {duckdb_path(url)} is in use by {holder}: DuckDB lets one process write a file at a time; "
            "wait for it to finish, or read a snapshot"
        )
    if "not a valid DuckDB database" in text or "Corrupt" in text or "IO Error" in text:
        return DatabaseError(f"cannot open database {duckdb_path(url) or url}: {text.splitlines()[0]}")
    return DatabaseError(f"cannot open database {url}: {text.splitlines()[0]}")


def create_engine(url: str | None = None, *, read_only: bool = False) -> sa.Engine:
    """An engine for the configured (or given) database; creates the DuckDB file's folder when writing."""
    url = url or get_settings().resolved_database_url
    kwargs: dict = {}
    if is_duckdb(url):
        path = duckdb_path(url)
        if path is not None:
            if read_only and not path.exists():
                raise DatabaseError(f"database {path} does not exist: run `matlake init` or `matlake demo` first")
            if not read_only:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise DatabaseError(f"cannot create folder {path.parent}: {exc.strerror}") from None
        kwargs["connect_args"] = {"read_only": read_only} if read_only else {}
        kwargs["poolclass"] = sa.pool.NullPool
    return sa.create_engine(url, **kwargs)


def open_connection(engine: sa.Engine, *, timeout_s: float | None = None) -> sa.Connection:
    """A connection, waiting up to ``timeout_s`` for a DuckDB lock held by another process."""
    timeout_s = get_settings().lock_timeout_s if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return engine.connect()
        except sa.exc.DBAPIError as exc:
            error = _friendly_open_error(str(engine.url), exc)
            if isinstance(error, DatabaseLockedError) and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            raise error from None


@contextmanager
def connect(engine: sa.Engine, *, timeout_s: float | None = None) -> Iterator[sa.Connection]:
    """A connection in one transaction (committed on success), waiting for the DuckDB lock like open_connection."""
    conn = open_connection(engine, timeout_s=timeout_s)
    try:
        with conn.begin():
            yield conn
    finally:
        conn.close()


def raw_duckdb(conn: sa.Connection):
    """The DuckDB connection under a SQLAlchemy connection (for Arrow registration)."""
    driver = conn.connection.driver_connection
    return getattr(driver, "_ConnectionWrapper__c", None) or getattr(driver, "c", None) or driver


# ---- migrations -------------------------------------------------------------------------------------------------


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("matlake.migrations")))
    return cfg


@lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_alembic_config())


def head_revision() -> str:
    return _script().get_current_head()


def current_revision(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def check_schema(conn: sa.Connection) -> None:
    """Refuse a database whose schema this code does not know (newer) or has not migrated (older)."""
    rev = current_revision(conn)
    head = head_revision()
    if rev == head:
        return
    if rev is None:
        raise SchemaVersionError("database has no matlake schema: run `matlake init` (or `matlake db upgrade`)")
    known = {s.revision for s in _script().walk_revisions()}
    if rev not in known:
        raise SchemaVersionError(
            f"database schema revision {rev} is newer than this matlake (knows up to {head}): upgrade matlake"
        )
    raise SchemaVersionError(f"database schema revision {rev} is older than this matlake ({head}): run `matlake db upgrade`")


def upgrade(engine: sa.Engine, revision: str = "head") -> str:
    """Migrate the database to ``revision`` (default head) in one transaction; returns the new revision."""
    with connect(engine) as conn:
        rev = current_revision(conn)
        if rev is not None and rev not in {s.revision for s in _script().walk_revisions()}:
            raise SchemaVersionError(f"database schema revision {rev} is newer than this matlake: upgrade matlake")
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        return current_revision(conn)


def downgrade(engine: sa.Engine, revision: str) -> str | None:
    with connect(engine) as conn:
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
        return current_revision(conn)


# ---- bulk loads -------------------------------------------------------------------------------------------------


def bulk_insert(conn: sa.Connection, table: str, data: pa.Table, *, skip_conflicts_on: tuple[str, ...] = ()) -> int:
    """Insert an Arrow table into ``table`` with one INSERT ... SELECT (DuckDB) or COPY (PostgreSQL).

    ``skip_conflicts_on`` names a unique key: rows whose key exists already are skipped (ON CONFLICT DO NOTHING).
    """
    _insert(conn, table, data, skip_conflicts_on, ())
    return data.num_rows


def insert_returning(conn: sa.Connection, table: str, data: pa.Table, returning: tuple[str, ...], *,
                     skip_conflicts_on: tuple[str, ...] = ()) -> list[tuple]:
    """:func:`bulk_insert` that also returns the ``returning`` columns of the rows it inserted (e.g. their ids)."""
    return _insert(conn, table, data, skip_conflicts_on, returning)


def _insert(conn: sa.Connection, table: str, data: pa.Table, skip_conflicts_on: tuple[str, ...],
            returning: tuple[str, ...]) -> list[tuple]:
    if data.num_rows == 0:
        return []
    columns = ", ".join(f'"{c}"' for c in data.column_names)
    tail = f" ON CONFLICT ({', '.join(skip_conflicts_on)}) DO NOTHING" if skip_conflicts_on else ""
    if returning:
        tail += " RETURNING " + ", ".join(f'"{c}"' for c in returning)
    if is_duckdb(conn):
        duck = raw_duckdb(conn)
        view = f"_bulk_{table}"
        duck.register(view, data)
        try:
            result = duck.execute(f'INSERT INTO "{table}" ({columns}) SELECT {columns} FROM {view}{tail}')
            if not returning:
                return []
            return list(zip(*(v.tolist() for v in result.fetchnumpy().values())))
        finally:
            try:
                duck.unregister(view)
            except Exception:  # an aborted transaction refuses even this; the original error matters
                pass
    # PostgreSQL: COPY straight into the table, or into a temporary one to INSERT ... ON CONFLICT / RETURNING from
    target = f"_bulk_{table}" if tail else table
    if tail:
        conn.exec_driver_sql(f'CREATE TEMP TABLE "{target}" (LIKE "{table}" INCLUDING DEFAULTS) ON COMMIT DROP')
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f'COPY "{target}" ({columns}) FROM STDIN') as copy:
        for row in zip(*(_pg_column(data.column(c)) for c in data.column_names)):
            copy.write_row(row)
    rows: list[tuple] = []
    if tail:
        result = conn.exec_driver_sql(f'INSERT INTO "{table}" ({columns}) SELECT {columns} FROM "{target}"{tail}')
        if returning:
            rows = [tuple(r) for r in result.all()]
        conn.exec_driver_sql(f'DROP TABLE "{target}"')
    return rows


def _pg_column(column: pa.ChunkedArray) -> list:
    values = column.to_pylist()
    if pa.types.is_list(column.type) or pa.types.is_struct(column.type) or pa.types.is_map(column.type):
        return [None if v is None else json.dumps(v) for v in values]
    return values


def allocate_ids(conn: sa.Connection, table: str, n: int) -> list[int]:
    """Reserve ``n`` primary keys from the table's sequence so parents and children can be linked before loading."""
    if n == 0:
        return []
    seq = f"{table}_id_seq"
    if is_duckdb(conn):
        result = raw_duckdb(conn).execute(f"SELECT nextval('{seq}') AS id FROM range({int(n)})").fetchnumpy()
        return result["id"].tolist()
    rows = conn.exec_driver_sql(f"SELECT nextval('{seq}') FROM generate_series(1, {int(n)})").all()
    return [r[0] for r in rows]


def lookup(conn: sa.Connection, table: str, key: str, value: str, keys: list) -> dict:
    """``{key: value}`` for the rows of ``table`` whose ``key`` column is in ``keys``, in one query however many.

    DuckDB joins an Arrow table of the keys; PostgreSQL takes them as one array parameter.
    """
    if not keys:
        return {}
    if is_duckdb(conn):
        duck = raw_duckdb(conn)
        view = f"_keys_{table}"
        duck.register(view, pa.table({"k": keys}))
        try:
            columns = duck.execute(
                f'SELECT t."{key}" AS k, t."{value}" AS v FROM "{table}" t WHERE t."{key}" IN (SELECT k FROM {view})'
            ).fetchnumpy()
        finally:
            duck.unregister(view)
        return dict(zip(columns["k"].tolist(), columns["v"].tolist()))
    rows = conn.execute(sa.text(f'SELECT "{key}", "{value}" FROM "{table}" WHERE "{key}" = ANY(:keys)'),
                        {"keys": list(keys)})
    return dict(rows.tuples().all())


def fetch_pairs(conn: sa.Connection, query: str, params: dict[str, Any] | None = None) -> list[tuple]:
    """Rows of a query (``:name`` parameters) as plain tuples, through DuckDB's columnar fetch on DuckDB, which is
    10-50x faster than SQLAlchemy's row-by-row fetch on large results."""
    if is_duckdb(conn):
        columns = raw_duckdb(conn).execute(_NAMED_PARAM.sub("$", query), params or {}).fetchnumpy()
        arrays = [v.tolist() for v in columns.values()]
        return list(zip(*arrays))
    return [tuple(r) for r in conn.execute(sa.text(query), params or {}).all()]
