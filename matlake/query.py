"""Read-only SQL for the CLI and notebooks: results as Arrow tables, written as CSV, JSON or Parquet."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import sqlalchemy as sa

from . import db
from .errors import DatabaseError, InputError


def run_query(query: str, params: dict[str, Any] | None = None, *, engine: sa.Engine | None = None) -> pa.Table:
    """Run ``query`` on a read-only connection; a SQL error becomes a one-line DatabaseError."""
    engine = engine or db.create_engine(read_only=True)
    conn = db.open_connection(engine)
    try:
        result = conn.execute(sa.text(query), params or {})
        if not result.returns_rows:
            raise InputError("the query returned no rows: `matlake sql` runs read-only queries")
        names = list(result.keys())
        rows = result.all()
    except sa.exc.DBAPIError as exc:
        message = str(exc.orig or exc).strip().splitlines()[0]
        raise DatabaseError(f"query failed: {message}") from None
    finally:
        conn.close()
    return _to_arrow(names, rows)


def _to_arrow(names: list[str], rows: list) -> pa.Table:
    columns = {}
    for i, name in enumerate(names):
        values = [r[i] for r in rows]
        if any(isinstance(v, (dict, list)) for v in values):
            values = [None if v is None else json.dumps(v) for v in values]
        try:
            columns[_unique(name, columns)] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            columns[_unique(name, columns)] = pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.table(columns) if columns else pa.table({})


def _unique(name: str, existing: dict) -> str:
    candidate, n = name, 1
    while candidate in existing:
        n += 1
        candidate = f"{name}_{n}"
    return candidate


def write_result(table: pa.Table, fmt: str, output: Path | None) -> None:
    """Write a query result as csv, json (one object per row, a list) or parquet."""
    if output is not None:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot write {output}: {exc.strerror}") from None
    try:
        if fmt == "parquet":
            pq.write_table(table, output, compression="zstd")
        elif fmt == "csv":
            sink = pa.BufferOutputStream()
            pacsv.write_csv(table, sink)
            _emit(sink.getvalue().to_pybytes(), output)
        else:
            _emit(json.dumps(table.to_pylist(), default=str, indent=1).encode() + b"\n", output)
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror or exc}") from None


def _emit(data: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        output.write_bytes(data)
