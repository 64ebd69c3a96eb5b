"""The documentation stays true: the schema reference is regenerated and compared, and every SQL recipe runs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

import matlake
from matlake import db
from matlake.docs import SCHEMA_DOC, schema_markdown, table_classes
from matlake.ingest import mp, supercon, synthesis
from matlake.ingest.framework import ingest
from matlake.schema import metadata
from tests.recipes import recipe_blocks

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "notebooks" / "data"


def _sql_blocks() -> list[str]:
    """The recipes the demo database can answer (blocks tagged ``-- needs: ...`` run in the test named beside them)."""
    blocks = [b for b in recipe_blocks() if not b.startswith("-- needs:")]
    assert len(blocks) >= 10
    return blocks


def test_schema_reference_is_in_sync_with_the_tables():
    assert SCHEMA_DOC.read_text() == schema_markdown(), (
        "docs/schema.md is out of date: run `python -m matlake.docs` and commit the result")


def test_schema_reference_covers_every_table_key_and_view():
    document = schema_markdown()
    classes = table_classes()
    assert {c.__table__.name for c in classes} == set(metadata.tables), "every table has its SQLModel class"
    for cls in classes:
        table = cls.__table__
        assert cls.__doc__ and cls.__doc__.strip(), f"{table.name} needs a docstring saying what one row is"
        assert f"### `{table.name}`" in document and f"    {table.name} {{" in document
        for column in table.columns:
            assert f"| `{column.name}` |" in document
            for fk in column.foreign_keys:
                assert re.search(rf"    {fk.column.table.name} [|o]\|--o\{{ {table.name} : \"{column.name}\"",
                                 document), f"{table.name}.{column.name} -> {fk.target_fullname} is in the diagram"
    from matlake.schema.views import VIEWS

    for view in VIEWS:
        assert f"### `{view}`" in document


@pytest.fixture
def recipes_database(demo_session, tmp_path) -> str:
    """The demo database plus the example files: MP polymorphs (then a release changing one value, with one
    rejected row), SuperCon lattice rows and three synthesis recipes."""
    path = tmp_path / "recipes.duckdb"
    shutil.copy2(demo_session[0] / "data" / "matlake.duckdb", path)
    url = f"duckdb:///{path}"
    engine = db.create_engine(url)
    ingest(mp, [EXAMPLES / "mp_formation_energies.csv"], engine=engine, release="example-1")
    ingest(supercon, [EXAMPLES / "supercon_lattice_tc.csv"], engine=engine)
    ingest(synthesis, [EXAMPLES / "solid-state_examples.json"], engine=engine)
    changed = tmp_path / "mp_formation_energies.csv"
    text = (EXAMPLES / "mp_formation_energies.csv").read_text()
    changed.write_text(text.replace("mp-390,TiO2,-3.505", "mp-390,TiO2,-3.509"))
    [last] = ingest(mp, [changed], engine=engine, release="example-2")
    assert (last.n_updated, last.n_rejected) == (1, 1)
    engine.dispose()
    return url


def test_every_recipe_runs_and_returns_rows(recipes_database):
    with matlake.connect(url=recipes_database) as con:
        for block in _sql_blocks():
            rows = con.execute(block).fetchall()
            assert rows, f"this recipe returned nothing:\n{block}"


@pytest.mark.postgres
def test_recipes_are_portable_to_postgresql(postgres_url):
    """Every recipe but those over the DuckDB-only feature views runs on PostgreSQL (an empty, migrated database)."""
    engine = db.create_engine(postgres_url)
    db.upgrade(engine)
    portable = [b for b in _sql_blocks() if "features_" not in b]
    assert len(portable) >= len(_sql_blocks()) - 1
    with engine.connect() as conn:
        for block in portable:
            conn.execute(sa.text(block.strip().rstrip(";"))).fetchall()
    engine.dispose()
