"""Where every row came from: sources, their releases, ingest runs and rejected records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from .columns import json_field, text, timestamp


class Source(SQLModel, table=True):
    """One external database matlake ingests (Materials Project, OQMD, SuperCon, ...)."""

    __tablename__ = "source"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, description="SourceName value, e.g. 'mp'.")
    title: str
    licence: str
    citation: str = text(nullable=False)
    homepage: str | None = None
    created_at: datetime = timestamp()


class SourceRelease(SQLModel, table=True):
    """One release (version) of a source: the exact files that were read, with sizes and sha256 checksums."""

    __tablename__ = "source_release"
    __table_args__ = (sa.UniqueConstraint("source_id", "tag"),)

    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="source.id")
    tag: str = Field(description="Release name given by the user, or derived from the files' checksums.")
    retrieved_at: datetime = timestamp(description="UTC time the files were obtained or first seen.")
    files: list[dict[str, Any]] | None = json_field(description="[{name, sha256, size_bytes}] of the input files.")
    created_at: datetime = timestamp()


class IngestRun(SQLModel, table=True):
    """One execution of an ingester over one release. Counters reflect committed batches only."""

    __tablename__ = "ingest_run"

    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="source.id")
    release_id: int = Field(foreign_key="source_release.id")
    dataset: str = Field(description="Which record stream of the source (e.g. 'csv:band_gap'); versioning is scoped to it.")
    mode: str = Field(description="RunMode: 'full' withdraws absent records, 'partial' does not.")
    status: str = Field(description="RunStatus: running, succeeded, failed, interrupted.")
    started_at: datetime = timestamp()
    finished_at: datetime | None = timestamp(nullable=True)
    parameters: dict[str, Any] | None = json_field(description="Input paths and options as given.")
    code_version: str
    host: str | None = None
    pid: int | None = None
    attempts: int = Field(default=1, description="1 + number of times an interrupted run was resumed.")
    n_read: int = 0
    n_inserted: int = 0
    n_updated: int = 0
    n_unchanged: int = 0
    n_rejected: int = 0
    n_withdrawn: int = 0
    error: str | None = text()


class IngestReject(SQLModel, table=True):
    """One input record an ingest run refused, with the reason; nothing read is ever silently dropped."""

    __tablename__ = "ingest_reject"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="ingest_run.id")
    file: str | None = None
    position: int | None = Field(default=None, description="0-based record number within the file.")
    record_key: str | None = Field(default=None, description="The source's id for the record when it could be read.")
    reason_code: str = Field(description="Short snake_case code, e.g. unknown_element, duplicate_id.")
    message: str = text(nullable=False)
    raw_excerpt: str | None = text(description="The start of the raw record (at most 2,000 characters).")
