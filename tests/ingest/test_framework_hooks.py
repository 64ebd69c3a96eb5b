"""Optional hooks of a source module: annotation datasets (records without a formula) and directories as input."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from matlake import db
from matlake.errors import InputError
from matlake.ingest import oqmd, taata
from matlake.ingest.framework import ingest
from matlake.modelling.data import LabelQuery, load_labels
from matlake.modelling.predict import select_inputs

from . import toy_source
from .test_oqmd import ALLOY, FE, NACL, page, write_pages
from .test_taata import COMPOUND, FOLDER


def annotating(dataset_name: str = "toy_notes") -> SimpleNamespace:
    """The toy CSV source, whose ``*notes*`` files are annotations: an empty formula cell means none."""

    def normalise(raw):
        record = toy_source.normalise(raw)
        record.formula = record.formula or None
        return record

    return SimpleNamespace(
        info=toy_source.info, read=toy_source.read, normalise=normalise,
        dataset=lambda path: dataset_name if "notes" in path.name else toy_source.dataset(path),
        is_annotation=lambda dataset: dataset == dataset_name,
    )


@pytest.fixture
def engine(any_url):
    engine = db.create_engine(any_url)
    db.upgrade(engine)
    return engine


def _rows(engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql)).all()]


# ---- annotation records ----------------------------------------------------------------------------------------


def test_records_without_formula_attach_to_materials_by_id(engine, tmp_path):
    source = annotating()
    energies = toy_source.write(tmp_path / "energy.csv", [("t-1", "Fe2O3", "-1.5"), ("t-2", "NaCl", "-2.1")])
    notes = toy_source.write(tmp_path / "notes.csv", [("t-1", "", "0.5"), ("t-3", "", "0.7"), ("t-4", "Xx", "1")])
    [first] = ingest(source, [notes], engine=engine)
    assert (first.n_read, first.n_inserted, first.rejects_by_reason) == (3, 2, {"unknown_element": 1})
    assert _rows(engine, "SELECT source_record_id, composition_id, formula, formula_raw FROM materials_current "
                         "ORDER BY 1") == [("t-1", None, None, None), ("t-3", None, None, None)]
    assert _rows(engine, "SELECT count(*) FROM composition") == [(0,)]

    ingest(source, [energies], engine=engine)
    assert _rows(engine, "SELECT source_record_id, formula, dataset FROM materials_current ORDER BY 1") == [
        ("t-1", "Fe2O3", "toy_energy"), ("t-2", "NaCl", "toy_energy"), ("t-3", None, "toy_notes")]
    assert _rows(engine, "SELECT source_record_id, dataset, value, formula FROM properties_current ORDER BY 1, 2") == [
        ("t-1", "toy_energy", -1.5, "Fe2O3"), ("t-1", "toy_notes", 0.5, None), ("t-2", "toy_energy", -2.1, "NaCl"),
        ("t-3", "toy_notes", 0.7, None)]

    # an annotation that gains a formula is an update; one that disappears is withdrawn
    toy_source.write(notes, [("t-1", "Fe2O3", "0.5")])
    [again] = ingest(source, [notes], engine=engine)
    assert (again.n_updated, again.n_withdrawn, again.n_rejected) == (1, 1, 0)
    assert _rows(engine, "SELECT r.composition_id IS NULL, r.valid_to_run_id IS NULL FROM material_revision r "
                         "JOIN material m ON m.id = r.material_id WHERE m.source_record_id = 't-1' "
                         "AND r.dataset = 'toy_notes' ORDER BY r.id") == [(True, False), (False, True)]
    assert _rows(engine, "SELECT source_record_id FROM materials_withdrawn") == [("t-3",)]


def test_missing_formula_outside_annotation_datasets_is_still_a_reject(engine, tmp_path):
    source = annotating()
    [s] = ingest(source, [toy_source.write(tmp_path / "energy.csv", [("t-1", "", "-1.5")])], engine=engine)
    assert (s.n_inserted, s.rejects_by_reason) == (0, {"empty_formula": 1})


def test_features_labels_and_predictions_skip_materials_without_composition(engine, tmp_path):
    from matlake.featurestore.builders import definition

    source = annotating()
    ingest(source, [toy_source.write(tmp_path / "notes.csv", [("t-1", "", "0.5"), ("t-3", "", "0.7")])],
           engine=engine)
    ingest(source, [toy_source.write(tmp_path / "energy.csv", [("t-1", "Fe2O3", "-1.5"), ("t-2", "NaCl", "-2")])],
           engine=engine)
    with engine.connect() as conn:
        inputs = conn.execute(sa.text(definition("magpie").inputs_sql.format(source_filter=""))).all()
    assert sorted(c.formula for c in _compositions(engine, [r[0] for r in inputs])) == ["Fe2O3", "NaCl"]
    labels = load_labels(engine, LabelQuery(source="toy", property="formation_energy_per_atom"))
    assert sorted(labels.column("formula").to_pylist()) == ["Fe2O3", "NaCl"]  # the notes' values are not labels
    assert None not in labels.column("composition_id").to_pylist()
    selected = select_inputs(engine, "source:toy")
    assert len(selected.composition_ids) == 2 and None not in selected.composition_ids
    assert len(select_inputs(engine, "sql:SELECT material_id, composition_id FROM materials_current").amounts) == 2


def _compositions(engine, ids: list[int]) -> list:
    with engine.connect() as conn:
        stmt = sa.text("SELECT formula FROM composition WHERE id IN :ids").bindparams(
            sa.bindparam("ids", expanding=True))
        return conn.execute(stmt, {"ids": ids}).all()


# ---- directories -----------------------------------------------------------------------------------------------


def test_a_directory_needs_the_expand_hook(engine, tmp_path):
    toy_source.write(tmp_path / "energy.csv", [("t-1", "Fe2O3", "-1.5")])
    with pytest.raises(InputError, match="is a directory and source toy reads files only"):
        ingest(toy_source, [tmp_path], engine=engine)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no input files"):
        ingest(SimpleNamespace(info=toy_source.info, expand=lambda d: []), [tmp_path / "empty"], engine=engine)


def test_oqmd_page_directory_is_its_pages(engine, tmp_path):
    write_pages(tmp_path / "pages", [
        page([NACL, FE], next_url="https://oqmd.org/optimade/v1/structures?page_offset=2", total=3),
        page([ALLOY], next_url=None, total=3)])
    [s] = ingest(oqmd, [tmp_path / "pages"], engine=engine)
    assert (s.dataset, s.n_read, s.n_inserted) == ("oqmd_optimade_structures", 3, 3)
    os.remove(oqmd.page_files(tmp_path / "pages")[0])
    with pytest.raises(InputError, match="a page is missing"):
        ingest(oqmd, [tmp_path / "pages"], engine=engine)


def test_taata_folder_is_its_poscars(tmp_path):
    for name, text in FOLDER.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "abc123.poscar.gz").write_bytes(gzip.compress(COMPOUND.encode()))
    (tmp_path / "README.txt").write_text("not a POSCAR")
    assert [p.name for p in taata.expand(tmp_path)] == sorted([*FOLDER, "abc123.poscar.gz"])
    env = {**os.environ, "MATLAKE_DATA_DIR": str(tmp_path / "data"), "MATLAKE_CONFIG": str(tmp_path / "none.toml")}
    env.pop("MATLAKE_DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-m", "matlake.cli", "ingest", "taata", str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    engine = db.create_engine(f"duckdb:///{tmp_path / 'data' / 'matlake.duckdb'}", read_only=True)
    assert _rows(engine, "SELECT n_read, n_inserted, n_rejected FROM ingest_run") == [(10, 6, 4)]


# ---- the migration ---------------------------------------------------------------------------------------------


def test_migration_0004_round_trips_with_rows_and_refuses_to_drop_annotations(any_url, tmp_path):
    engine = db.create_engine(any_url)
    db.upgrade(engine)
    ingest(toy_source, [toy_source.write(tmp_path / "energy.csv", [("t-1", "Fe2O3", "-1.5")])], engine=engine)
    assert db.downgrade(engine, "0003") == "0003"
    assert _rows(engine, "SELECT source_record_id, formula FROM materials_current") == [("t-1", "Fe2O3")]
    with pytest.raises(sa.exc.DBAPIError, match="(?i)not.null"), engine.begin() as conn:  # NOT NULL is back
        conn.execute(sa.text("UPDATE material_revision SET composition_id = NULL"))
    assert db.upgrade(engine) == db.head_revision()
    ingest(annotating(), [toy_source.write(tmp_path / "notes.csv", [("t-2", "", "1")])], engine=engine)
    with pytest.raises(Exception, match="1 material revisions have no composition"):
        db.downgrade(engine, "0003")
    assert _rows(engine, "SELECT source_record_id, formula FROM materials_current ORDER BY 1") == [
        ("t-1", "Fe2O3"), ("t-2", None)]  # nothing changed
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM property_value WHERE dataset = 'toy_notes'"))
        conn.execute(sa.text("DELETE FROM material_revision WHERE composition_id IS NULL"))
    assert db.downgrade(engine, "0003") == "0003"
