"""Alembic environment: runs the same revisions on DuckDB and PostgreSQL.

matlake calls Alembic programmatically (``matlake.db.upgrade``) and passes an open connection in
``config.attributes["connection"]``; the URL path is used only by the ``alembic`` command line.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import duckdb_sqlalchemy  # noqa: F401  registers the DuckDB Alembic implementation
import matlake.schema as schema

config = context.config
target_metadata = schema.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=False,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        _run(conn)
        conn.commit()


if context.is_offline_mode():
    raise SystemExit("matlake migrations run online only: use `matlake db upgrade`.")
run_migrations_online()
