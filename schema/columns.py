"""Column helpers shared by every table module: 64-bit floats, JSON, UTC timestamps, versioning columns.

DuckDB maps SQLAlchemy's ``Float`` to a 4-byte REAL, so every measured value goes through :func:`double`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field


def utcnow() -> datetime:
    """Naive UTC timestamp: both DuckDB and PostgreSQL store it without the ICU time-zone machinery."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def double(default: Any = ..., *, nullable: bool = False, description: str | None = None) -> Any:
    """A DOUBLE PRECISION column."""
    if nullable and default is ...:
        default = None
    return Field(default=default, sa_type=sa.Double(), nullable=nullable, description=description)


def json_field(*, nullable: bool = True, description: str | None = None) -> Any:
    """A JSON column (DuckDB JSON, PostgreSQL JSON)."""
    return Field(default=None, sa_type=sa.JSON(), nullable=nullable, description=description)


def timestamp(*, nullable: bool = False, description: str | None = None) -> Any:
    if nullable:
        return Field(default=None, sa_type=sa.DateTime(), nullable=True, description=description)
    return Field(default_factory=utcnow, sa_type=sa.DateTime(), nullable=False, description=description)


def text(*, nullable: bool = True, description: str | None = None) -> Any:
    """Unbounded text (VARCHAR without a length on both backends, so DuckDB and PostgreSQL reflect the same type)."""
    return Field(default=None if nullable else ..., sa_type=sa.String(), nullable=nullable, description=description)
