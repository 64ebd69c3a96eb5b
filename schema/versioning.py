"""Row versioning shared by every fact table, and the as-of filter over it.

A fact row is valid from the ingest run that wrote it (``valid_from_run_id``) until the run that replaced or withdrew it
(``valid_to_run_id``; NULL = still current). Run ids grow monotonically across all sources, so a run id is a snapshot
of the whole database.
"""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class Versioned(SQLModel):
    """Columns of a fact that can change between releases."""

    dataset: str = Field(description="Record stream of the source this fact came from; versioning is scoped to it.")
    content_hash: str = Field(description="sha1 of the normalised record this row belongs to.")
    valid_from_run_id: int = Field(description="Ingest run that wrote this row.")
    valid_to_run_id: int | None = Field(default=None, description="Ingest run that superseded it; NULL = current.")


def as_of_sql(alias: str, run_param: str = "as_of_run") -> str:
    """SQL predicate selecting rows of ``alias`` valid at the run bound to ``:run_param``."""
    return (
        f"({alias}.valid_from_run_id <= :{run_param} AND "
        f"({alias}.valid_to_run_id IS NULL OR {alias}.valid_to_run_id > :{run_param}))"
    )


SNAPSHOT_SQL = (
    "SELECT coalesce(max(id), 0) FROM ingest_run WHERE n_inserted + n_updated + n_withdrawn > 0"
)
"""The newest ingest run that changed any row: re-ingesting identical data does not create a new snapshot, so
features, models and predictions computed before and after such a no-op run share the same snapshot id."""
