"""Parquet parts: what a worker writes for one chunk of a feature build and hands back to be registered.

Kept apart from ``store`` (which needs SQLAlchemy, DuckDB and the schema) so that a Dask worker running a chunk
imports only pyarrow and hashlib for it.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from matlake.checksums import sha256_file


@dataclass(frozen=True, slots=True)
class PartFile:
    """One Parquet part written by a worker, before or after registration."""

    path: str
    sha256: str
    size_bytes: int
    rows: int

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size_bytes": self.size_bytes, "rows": self.rows}


def write_part(directory: Path, table: pa.Table, *, stem: str | None = None) -> PartFile:
    """Write one Parquet part (zstd) into ``directory``; workers call this and return the PartFile."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem or 'part-' + uuid.uuid4().hex[:12]}.parquet"
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
    return PartFile(str(path), sha256_file(path), path.stat().st_size, table.num_rows)
