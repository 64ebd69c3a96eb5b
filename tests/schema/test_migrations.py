"""Migrations build the whole schema on DuckDB and PostgreSQL, round-trip, and match the SQLModel metadata."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import matlake.schema as schema
from matlake import db
from matlake.errors import SchemaVersionError
from matlake.schema.views import VIEWS


def _drift(engine: sa.Engine) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), schema.metadata)


def _view_columns(conn: sa.Connection, sql: str) -> list[str]:
    return list(conn.execute(sa.text(f"SELECT * FROM ({sql}) v LIMIT 0")).keys())


def test_upgrade_builds_every_table_and_view(any_url):
    engine = db.create_engine(any_url)
    assert db.upgrade(engine) == db.head_revision()
    tables = set(sa.inspect(engine).get_table_names())
    assert set(schema.metadata.tables) <= tables
    with engine.connect() as conn:
        for name, body in VIEWS.items():
            assert _view_columns(conn, f"SELECT * FROM {name}") == _view_columns(conn, body), name


def test_metadata_and_migrated_database_do_not_drift(any_url):
    engine = db.create_engine(any_url)
    db.upgrade(engine)
    assert _drift(engine) == []


def test_drift_is_detected(any_url):
    engine = db.create_engine(any_url)
    db.upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE model_metric ADD COLUMN stray INTEGER")
    diffs = _drift(engine)
    assert any(d[0] == "remove_column" and d[2] == "model_metric" for d in diffs)


def test_upgrade_downgrade_upgrade_round_trip(any_url):
    engine = db.create_engine(any_url)
    db.upgrade(engine)
    assert db.downgrade(engine, "base") is None
    remaining = set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    assert remaining == set()
    assert db.upgrade(engine) == db.head_revision()
    assert _drift(engine) == []


def test_database_newer_than_code_is_refused(any_url):
    engine = db.create_engine(any_url)
    db.upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_future'")
    with engine.connect() as conn, pytest.raises(SchemaVersionError, match="newer than this matlake"):
        db.check_schema(conn)
    with pytest.raises(SchemaVersionError, match="newer"):
        db.upgrade(engine)


def test_empty_database_is_refused_until_initialised(any_url):
    engine = db.create_engine(any_url)
    with engine.connect() as conn, pytest.raises(SchemaVersionError, match="matlake init"):
        db.check_schema(conn)


def test_failed_migration_rolls_back_completely(duckdb_url):
    engine = db.create_engine(duckdb_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE structure (id INTEGER)")  # collides with the v1 schema
    with pytest.raises(Exception):
        db.upgrade(engine)
    tables = set(sa.inspect(engine).get_table_names())
    assert tables == {"structure"}


def test_stepwise_upgrade_keeps_existing_rows(any_url):
    engine = db.create_engine(any_url)
    db.upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO source (name, title, licence, citation, created_at) "
            "VALUES ('mp', 'Materials Project', 'CC BY 4.0', 'Jain et al. 2013', CURRENT_TIMESTAMP)"
        )
    assert db.upgrade(engine) == db.head_revision()
    assert db.downgrade(engine, "0001") == "0001"
    assert db.upgrade(engine) == db.head_revision()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT name FROM source").scalars().all() == ["mp"]
    assert _drift(engine) == []
