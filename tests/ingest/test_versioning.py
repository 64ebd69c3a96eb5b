"""Data versioning through the framework: idempotent re-ingest, changed values kept, withdrawals, as-of reads."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from matlake import db
from matlake.ingest.framework import _code_fingerprint, ingest
from matlake.schema.versioning import as_of_sql

from . import toy_source

V1 = [("t-1", "Fe2O3", "-1.5"), ("t-2", "NaCl", "-2.1"), ("t-3", "LiFePO4", "-2.5"), ("t-4", "Xx2O", "-1.0"),
      ("t-5", "SiO2", "nan"), ("t-2", "NaCl", "-2.0")]
V2 = [("t-1", "Fe2O3", "-1.6"), ("t-2", "NaCl", "-2.1"), ("t-6", "MgO", "-3.0")]


@pytest.fixture
def engine(any_url):
    engine = db.create_engine(any_url)
    db.upgrade(engine)
    return engine


def _current_value(engine, record_id):
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT value FROM properties_current WHERE source_record_id = :r"), {"r": record_id}
        ).scalar()


def test_first_ingest_counts_and_rejects(engine, tmp_path):
    [s] = ingest(toy_source, [toy_source.write(tmp_path / "v1.csv", V1)], engine=engine)
    assert (s.n_read, s.n_inserted, s.n_rejected) == (6, 3, 3)
    assert s.n_read == s.n_inserted + s.n_updated + s.n_unchanged + s.n_rejected
    assert s.rejects_by_reason == {"unknown_element": 1, "non_finite_value": 1, "duplicate_id": 1}
    with engine.connect() as conn:
        rejects = conn.execute(sa.text(
            "SELECT record_key, reason_code, position, message, raw_excerpt FROM ingest_reject ORDER BY position"
        )).all()
        run = conn.execute(sa.text("SELECT status, n_read, n_inserted, n_rejected FROM ingest_run")).one()
    assert [(r.record_key, r.reason_code, r.position) for r in rejects] == [
        ("t-4", "unknown_element", 3), ("t-5", "non_finite_value", 4), ("t-2", "duplicate_id", 5)]
    assert all(r.message and r.raw_excerpt for r in rejects)
    assert "Xx2O" in rejects[0].message
    assert tuple(run) == ("succeeded", 6, 3, 3)
    assert _current_value(engine, "t-2") == -2.1  # the first occurrence of a duplicate id is kept


def test_reingesting_identical_input_changes_nothing(engine, tmp_path):
    path = toy_source.write(tmp_path / "v1.csv", V1)
    ingest(toy_source, [path], engine=engine)
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM property_value")).scalar()
    [again] = ingest(toy_source, [path], engine=engine)
    assert (again.n_inserted, again.n_updated, again.n_unchanged, again.n_withdrawn) == (0, 0, 3, 0)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM property_value")).scalar() == before
        assert conn.execute(sa.text("SELECT count(*) FROM material_revision")).scalar() == 3


def test_later_release_keeps_old_values_and_withdraws_absent_records(engine, tmp_path):
    [r1] = ingest(toy_source, [toy_source.write(tmp_path / "v1.csv", V1)], engine=engine, release="2024.1")
    [r2] = ingest(toy_source, [toy_source.write(tmp_path / "v2.csv", V2)], engine=engine, release="2024.2")
    assert (r2.n_inserted, r2.n_updated, r2.n_unchanged, r2.n_withdrawn) == (1, 1, 1, 1)
    assert _current_value(engine, "t-1") == -1.6
    with engine.connect() as conn:
        as_of = conn.execute(
            sa.text(f"SELECT m.source_record_id, p.value FROM property_value p JOIN material m ON m.id = p.material_id "
                    f"WHERE {as_of_sql('p')} ORDER BY 1"),
            {"as_of_run": r1.run_id},
        ).all()
        current = conn.execute(sa.text("SELECT source_record_id FROM materials_current ORDER BY 1")).scalars().all()
        withdrawn = conn.execute(sa.text("SELECT source_record_id, withdrawn_in_run_id FROM materials_withdrawn")).all()
        n_materials = conn.execute(sa.text("SELECT count(*) FROM material")).scalar()
    assert as_of == [("t-1", -1.5), ("t-2", -2.1), ("t-3", -2.5)]
    assert current == ["t-1", "t-2", "t-6"]
    assert withdrawn == [("t-3", r2.run_id)]
    assert n_materials == 4  # withdrawn, never deleted


def test_withdrawn_record_that_returns_is_active_again(engine, tmp_path):
    ingest(toy_source, [toy_source.write(tmp_path / "v1.csv", V1)], engine=engine)
    ingest(toy_source, [toy_source.write(tmp_path / "v2.csv", V2)], engine=engine)
    [r3] = ingest(toy_source, [toy_source.write(tmp_path / "v3.csv", V2 + [("t-3", "LiFePO4", "-2.5")])],
                  engine=engine)
    assert (r3.n_updated, r3.n_unchanged) == (1, 3)
    assert _current_value(engine, "t-3") == -2.5


def test_partial_mode_does_not_withdraw(engine, tmp_path):
    ingest(toy_source, [toy_source.write(tmp_path / "v1.csv", V1)], engine=engine)
    [r] = ingest(toy_source, [toy_source.write(tmp_path / "add.csv", [("t-9", "CaO", "-3.3")])], engine=engine,
                 mode="partial")
    assert (r.n_inserted, r.n_withdrawn) == (1, 0)


def test_empty_file_is_a_reject_and_withdraws_nothing(engine, tmp_path):
    ingest(toy_source, [toy_source.write(tmp_path / "v1.csv", V1)], engine=engine)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    [r] = ingest(toy_source, [empty], engine=engine)
    assert r.rejects_by_reason == {"empty_file": 1}
    assert r.n_withdrawn == 0
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM materials_current")).scalar() == 3


def test_datasets_of_one_source_version_independently(engine, tmp_path):
    ingest(toy_source, [toy_source.write(tmp_path / "v1.csv", V1)], engine=engine)
    [gap] = ingest(toy_source, [toy_source.write(tmp_path / "gap.csv", V2)], engine=engine)
    assert (gap.dataset, gap.n_inserted, gap.n_updated, gap.n_withdrawn) == ("toy_gap", 3, 0, 0)
    with engine.connect() as conn:
        per_dataset = conn.execute(sa.text(
            "SELECT dataset, count(*) FROM materials_current GROUP BY dataset ORDER BY dataset")).all()
        n_materials = conn.execute(sa.text("SELECT count(*) FROM material")).scalar()
        n_properties = conn.execute(sa.text("SELECT count(*) FROM properties_current")).scalar()
    assert [tuple(r) for r in per_dataset] == [("toy_energy", 1), ("toy_gap", 3)]  # newest revision per material
    assert (n_materials, n_properties) == (4, 6)


def test_identical_files_are_not_reread_but_accounted(engine, tmp_path, monkeypatch):
    path = toy_source.write(tmp_path / "v1.csv", V1)
    [first] = ingest(toy_source, [path], engine=engine)
    calls = []
    monkeypatch.setattr(toy_source, "normalise", lambda raw: calls.append(raw) or None)
    [again] = ingest(toy_source, [path], engine=engine)
    assert calls == []  # identical bytes, identical code: nothing to re-read
    assert (again.n_read, again.n_unchanged, again.n_rejected) == (6, 3, 3)
    assert again.rejects_by_reason == first.rejects_by_reason
    with engine.connect() as conn:
        n_rejects = conn.execute(sa.text("SELECT count(*) FROM ingest_reject WHERE run_id = :r"),
                                 {"r": again.run_id}).scalar()
    assert n_rejects == 3


def test_code_fingerprint_of_a_package_covers_its_modules(tmp_path):
    """A source split into a package (mp, synthesis) is re-read after an edit to any of its modules."""
    fingerprints = []
    for version in ("[]", "[1]"):
        package = tmp_path / f"source_{len(fingerprints)}"
        package.mkdir()
        (package / "__init__.py").write_text("from .rows import read\n")
        (package / "rows.py").write_text(f"def read(path):\n    return {version}\n")
        fingerprints.append(_code_fingerprint(str(package / "__init__.py")))
    assert fingerprints[0] != fingerprints[1]


def test_files_are_reread_after_another_release(engine, tmp_path):
    v1 = toy_source.write(tmp_path / "v1.csv", V1)
    ingest(toy_source, [v1], engine=engine)
    ingest(toy_source, [toy_source.write(tmp_path / "v2.csv", V2)], engine=engine)
    [back] = ingest(toy_source, [v1], engine=engine)  # going back to release 1 must restore its values
    assert (back.n_updated, back.n_inserted) == (2, 0) and back.n_withdrawn == 1
    assert _current_value(engine, "t-1") == -1.5
