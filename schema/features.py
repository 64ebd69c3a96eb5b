"""The feature-set registry: every Parquet feature set that was built, from which snapshot, in which files."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from .columns import json_field, timestamp


class FeatureSet(SQLModel, table=True):
    """One built version of one feature set (e.g. magpie v1 over MP as of run 12), stored as Parquet files."""

    __tablename__ = "feature_set"
    __table_args__ = (sa.UniqueConstraint("name", "version", "partition"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(description="Feature set name, e.g. 'magpie', 'protostructure'.")
    version: int
    partition: str = Field(default="all", description="Coarse partition, e.g. a source name.")
    parameters: dict[str, Any] | None = json_field()
    code_version: str
    library_versions: dict[str, str] | None = json_field(description="e.g. {'pymatgen': '2026.10.24'}.")
    snapshot_run_id: int = Field(description="Latest ingest run the inputs were read at.")
    input_runs: list[int] | None = json_field(description="Ingest runs whose rows were inputs.")
    row_count: int
    column_schema: dict[str, str] | None = json_field(description="Column name -> Arrow type.")
    files: list[dict[str, Any]] | None = json_field(description="[{path, sha256, size_bytes, rows}].")
    status: str = Field(default="ready")
    created_at: datetime = timestamp()
