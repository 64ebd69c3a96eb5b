"""Parquet feature sets on disk, registered in SQL (``feature_set``) and exposed as DuckDB views.

Layout: ``<root>/<name>/v<version>/<partition>/part-<k>.parquet`` (zstd). Partitions are coarse (a source or
``all``), never per material. A new version may reuse the part files of the previous one (incremental rebuilds
write only the rows whose inputs changed), so a version is the list of files in its registry row, each with its
sha256.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import sqlalchemy as sa

from matlake import db
from matlake.checksums import sha256_file
from matlake.errors import InputError
from matlake.schema.columns import utcnow
from matlake.version import code_version

from .parts import PartFile, write_part  # re-exported: written by workers, registered here


@dataclass(frozen=True, slots=True)
class FeatureSetInfo:
    """A registered feature-set version."""

    id: int
    name: str
    version: int
    partition: str
    row_count: int
    snapshot_run_id: int
    files: list[dict[str, Any]]
    parameters: dict[str, Any]
    column_schema: dict[str, str]

    @property
    def paths(self) -> list[str]:
        return [f["path"] for f in self.files]


class FeatureStore:
    """Writes, registers, finds and reads feature sets under one root folder, against one database."""

    def __init__(self, root: Path, engine: sa.Engine) -> None:
        self.root = Path(root).resolve()
        self.engine = engine

    # -- writing --

    def staging_dir(self) -> Path:
        """A fresh folder for workers' parts; :meth:`register` moves them into the version's folder."""
        path = self.root / "_staging" / uuid.uuid4().hex
        path.mkdir(parents=True, exist_ok=True)
        return path

    def register(
        self,
        name: str,
        parts: list[PartFile],
        *,
        partition: str = "all",
        parameters: dict[str, Any] | None = None,
        snapshot_run_id: int,
        input_runs: list[int] | None = None,
        reused: list[dict[str, Any]] | None = None,
        library_versions: dict[str, str] | None = None,
    ) -> FeatureSetInfo:
        """Move new parts into place and record the version in one transaction; old versions stay readable."""
        with db.connect(self.engine) as conn:
            version = (conn.execute(
                sa.text("SELECT max(version) FROM feature_set WHERE name = :n AND partition = :p"),
                {"n": name, "p": partition},
            ).scalar() or 0) + 1
            final_dir = self.root / name / f"v{version}" / partition
            final_dir.mkdir(parents=True, exist_ok=True)
            files = [dict(f) for f in (reused or [])]
            for k, part in enumerate(parts):
                target = final_dir / f"part-{k:05d}.parquet"
                shutil.move(part.path, target)
                files.append({**part.as_json(), "path": str(target)})
            schema = _schema_of(files)
            row_count = sum(f["rows"] for f in files)
            new_id = conn.execute(
                sa.text(
                    "INSERT INTO feature_set (name, version, partition, parameters, code_version, library_versions, "
                    "snapshot_run_id, input_runs, row_count, column_schema, files, status, created_at) VALUES "
                    "(:name, :version, :partition, :parameters, :cv, :libs, :snap, :inputs, :rows, :schema, :files, "
                    "'ready', :now) RETURNING id"
                ),
                {"name": name, "version": version, "partition": partition,
                 "parameters": json.dumps(parameters or {}, sort_keys=True), "cv": code_version(),
                 "libs": json.dumps(library_versions or {}), "snap": snapshot_run_id,
                 "inputs": json.dumps(sorted(set(input_runs or []))), "rows": row_count,
                 "schema": json.dumps(schema), "files": json.dumps(files), "now": utcnow()},
            ).scalar()
            if db.is_duckdb(conn):
                self._create_view(conn, name)
        for part in parts:
            staging = Path(part.path).parent
            if staging.exists() and staging.parent.name == "_staging" and not any(staging.iterdir()):
                staging.rmdir()
        return FeatureSetInfo(new_id, name, version, partition, row_count, snapshot_run_id, files, parameters or {},
                              schema)

    def _create_view(self, conn: sa.Connection, name: str) -> None:
        """``features_<name>``: the latest version of every partition, queryable beside the tables (DuckDB)."""
        paths = [p for info in self.latest_all(name, conn=conn) for p in info.paths]
        if not paths:
            return
        listing = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
        conn.exec_driver_sql(
            f'CREATE OR REPLACE VIEW "features_{_identifier(name)}" AS SELECT * FROM read_parquet([{listing}], '
            "union_by_name = true)"
        )

    # -- finding and reading --

    def latest(self, name: str, partition: str = "all", *, conn: sa.Connection | None = None) -> FeatureSetInfo | None:
        rows = self._rows("WHERE name = :n AND partition = :p ORDER BY version DESC LIMIT 1",
                          {"n": name, "p": partition}, conn)
        return rows[0] if rows else None

    def latest_all(self, name: str, *, conn: sa.Connection | None = None) -> list[FeatureSetInfo]:
        """The newest version of each partition of ``name``."""
        rows = self._rows("WHERE name = :n ORDER BY partition, version DESC", {"n": name}, conn)
        newest: dict[str, FeatureSetInfo] = {}
        for info in rows:
            newest.setdefault(info.partition, info)
        return list(newest.values())

    def as_of(self, name: str, run: int, partition: str = "all") -> FeatureSetInfo | None:
        """The newest version built from a snapshot no later than ingest run ``run``: the features to join with
        labels read as of ``run`` (point in time: nothing ingested after ``run`` leaks into either side)."""
        rows = self._rows("WHERE name = :n AND partition = :p AND snapshot_run_id <= :r ORDER BY version DESC LIMIT 1",
                          {"n": name, "p": partition, "r": run}, None)
        return rows[0] if rows else None

    def get(self, name: str, version: int, partition: str = "all") -> FeatureSetInfo:
        rows = self._rows("WHERE name = :n AND version = :v AND partition = :p",
                          {"n": name, "v": version, "p": partition}, None)
        if not rows:
            raise InputError(f"feature set {name} v{version} ({partition}) is not registered")
        return rows[0]

    def list(self) -> list[FeatureSetInfo]:
        return self._rows("ORDER BY name, partition, version", {}, None)

    def _rows(self, where: str, params: dict[str, Any], conn: sa.Connection | None) -> list[FeatureSetInfo]:
        query = sa.text(
            "SELECT id, name, version, partition, row_count, snapshot_run_id, files, parameters, column_schema "
            f"FROM feature_set {where}"
        )
        if conn is None:
            with db.connect(self.engine) as own:
                result = own.execute(query, params).all()
        else:
            result = conn.execute(query, params).all()
        return [
            FeatureSetInfo(r.id, r.name, r.version, r.partition, r.row_count, r.snapshot_run_id,
                           _json(r.files) or [], _json(r.parameters) or {}, _json(r.column_schema) or {})
            for r in result
        ]

    def read(self, info: FeatureSetInfo, *, columns: list[str] | None = None, verify: bool = False) -> pa.Table:
        """All rows of one registered version; ``verify`` re-checks every file's sha256 first."""
        if verify:
            for f in info.files:
                actual = sha256_file(Path(f["path"]))
                if actual != f["sha256"]:
                    raise InputError(f"feature file {f['path']} changed on disk: sha256 {actual} != {f['sha256']}")
        missing = [p for p in info.paths if not Path(p).exists()]
        if missing:
            raise InputError(f"feature set {info.name} v{info.version}: file {missing[0]} is missing")
        if not info.paths:
            return pa.table({})
        return pads.dataset(info.paths, format="parquet").to_table(columns=columns)


def _schema_of(files: list[dict[str, Any]]) -> dict[str, str]:
    if not files:
        return {}
    schema = pq.read_schema(files[0]["path"])
    return {field.name: str(field.type) for field in schema}


def _identifier(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise InputError(f"feature set name {name!r} must be letters, digits and underscores")
    return name


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
