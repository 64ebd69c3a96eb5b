"""Experimental band gaps and formation enthalpies: repeated measurements, metals, datasets, pymatgen's data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from matlake import db
from matlake.errors import InputError
from matlake.ingest import demo, experimental
from matlake.ingest.framework import ingest
from tests.conftest import shared_data

NON_METALS = "id,composition,Eg\n1,Hg0.7Cd0.3Te,0.3\n2,ZnTe,2.26\n3,AgBr,2.9\n4,ZnTe,2.4\n5,TeZn,2.18"  # no final \n
WITH_METALS = ",composition,Eg\n0,Na2CeP2O8,2.5\n1,LaCuOS,3.1\n2,Ho2MgTl,0.0\n3,MnFeCoGe.216,0.0\n4,ZnTe,-1.0\n"
MATBENCH = "formula,target\nAg(AuSe)2,0\nCu1.8S1,2.2\nCu9S5,0.00\nTe0.5Se0.5,1.1\n"  # values made up
SSUB = "AlNaO6Si2 -3.2\nAl2H4O9Si2 -2.501\nAl2H4O9Si2 -2.499\nAu 1.5e-09\n"


@pytest.fixture
def engine(tmp_path):
    engine = db.create_engine(f"duckdb:///{tmp_path / 'expt.duckdb'}")
    db.upgrade(engine)
    return engine


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _rows(engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql)).all()]


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def test_repeated_measurements_get_occurrence_ids(engine, tmp_path):
    [s] = ingest(experimental, [_write(tmp_path / "aviary_expt-non-metals.csv", NON_METALS)], engine=engine)
    assert (s.dataset, s.n_read, s.n_inserted, s.n_rejected) == ("expt_band_gap_nonmetals", 5, 5, 0)
    rows = _rows(engine, "SELECT p.source_record_id, r.formula_raw, p.value, p.unit, p.method, r.extra "
                         "FROM properties_current p JOIN material_revision r ON r.material_id = p.material_id "
                         "AND r.valid_to_run_id IS NULL WHERE p.formula = 'ZnTe' ORDER BY 1")
    assert [r[:5] for r in rows] == [("ZnTe", "ZnTe", 2.26, "eV", "experiment"),
                                     ("ZnTe~2", "ZnTe", 2.4, "eV", "experiment"),
                                     ("ZnTe~3", "TeZn", 2.18, "eV", "experiment")]
    assert [_json(r[5]) for r in rows] == [{"row_id": "2"}, {"row_id": "4"}, {"row_id": "5"}]
    assert _rows(engine, "SELECT source_record_id FROM material WHERE source_record_id LIKE 'Cd%'") == [
        ("Cd3Hg7Te10",)]


def test_repeated_row_id_is_a_duplicate(engine, tmp_path):
    path = _write(tmp_path / "aviary_expt-non-metals.csv", NON_METALS + "\n3,GaN,3.4\n")
    [s] = ingest(experimental, [path], engine=engine)
    assert (s.n_inserted, s.rejects_by_reason) == (5, {"duplicate_id": 1})
    [(key, message)] = _rows(engine, "SELECT record_key, message FROM ingest_reject")
    assert key == "GaN" and "row id '3'" in message


def test_full_file_with_metals_unnamed_index_and_bad_rows(engine, tmp_path):
    [s] = ingest(experimental, [_write(tmp_path / "aviary_expt-bandgaps.csv", WITH_METALS)], engine=engine)
    assert (s.dataset, s.n_read, s.n_inserted) == ("expt_band_gap_with_metals", 5, 3)
    assert s.rejects_by_reason == {"unparsable_formula": 1, "negative_band_gap": 1}
    assert _rows(engine, "SELECT source_record_id, value FROM properties_current WHERE value = 0") == [
        ("Ho2MgTl", 0.0)]  # a metal
    [(extra,)] = _rows(engine, "SELECT r.extra FROM material_revision r JOIN material m ON m.id = r.material_id "
                               "WHERE m.source_record_id = 'Ho2MgTl'")
    assert _json(extra) == {"row_id": "2"}


def test_matbench_spellings_of_one_composition(engine, tmp_path):
    [s] = ingest(experimental, [_write(tmp_path / "crabnet_matbench_expt_gap.csv", MATBENCH)], engine=engine)
    assert (s.dataset, s.n_inserted, s.n_rejected) == ("matbench_expt_gap", 4, 0)
    rows = _rows(engine, "SELECT source_record_id, formula_raw FROM materials_current WHERE formula = 'Cu9S5' "
                         "ORDER BY 1")
    assert rows == [("Cu9S5", "Cu1.8S1"), ("Cu9S5~2", "Cu9S5")]


def test_ssub_duplicates_are_separate_measurements(engine, tmp_path):
    [s] = ingest(experimental, [_write(tmp_path / "qmpy_thermodata_ssub.dat", SSUB)], engine=engine)
    assert (s.dataset, s.n_read, s.n_inserted, s.n_rejected) == ("expt_formation_enthalpy_ssub", 4, 4, 0)
    rows = _rows(engine, "SELECT m.source_record_id, p.property, p.value, p.unit, p.reference FROM property_value p "
                         "JOIN material m ON m.id = p.material_id WHERE m.source_record_id LIKE 'Al2Si2H4O9%' "
                         "ORDER BY 1")  # properties_current has no reference column
    assert rows == [
        ("Al2Si2H4O9", "formation_enthalpy_per_atom", -2.501, "eV/atom", "elements in their standard states"),
        ("Al2Si2H4O9~2", "formation_enthalpy_per_atom", -2.499, "eV/atom", "elements in their standard states"),
    ]


def test_datasets_do_not_withdraw_each_other(engine, tmp_path):
    nonmetals = _write(tmp_path / "aviary_expt-non-metals.csv", NON_METALS)
    full = _write(tmp_path / "aviary_expt-bandgaps.csv", WITH_METALS)
    ingest(experimental, [nonmetals], engine=engine)
    [s] = ingest(experimental, [full], engine=engine)
    assert s.n_withdrawn == 0
    rows = _rows(engine, "SELECT dataset, count(*) FROM properties_current GROUP BY 1 ORDER BY 1")
    assert rows == [("expt_band_gap_nonmetals", 5), ("expt_band_gap_with_metals", 3)]
    [again] = ingest(experimental, [nonmetals], engine=engine)
    assert (again.n_unchanged, again.n_withdrawn) == (5, 0)


def test_pymatgen_exp_compounds_per_atom(engine):
    path = demo.demo_files()[0]
    [s] = ingest(experimental, [path], engine=engine)
    assert (s.dataset, s.n_read, s.n_rejected) == ("expt_formation_enthalpy_pymatgen", 2135, 0)
    [(value, unit)] = _rows(engine, "SELECT value, unit FROM properties_current WHERE source_record_id = 'Ag2CO3'")
    assert unit == "eV/atom" and value == pytest.approx(-5.242247592137407 / 6)


def test_unknown_file_is_an_input_error(engine, tmp_path):
    with pytest.raises(InputError, match="not a known experimental data file"):
        ingest(experimental, [_write(tmp_path / "gaps.csv", "formula,target\nGaN,3.4\n")], engine=engine)


@pytest.mark.shared_data
@pytest.mark.parametrize("relative, n_rows, n_rejected, n_repeated", [
    ("expt/aviary_expt-non-metals.csv", 3895, 0, 1428),
    ("expt/aviary_expt-bandgaps.csv", 6354, 35, 1430),
    ("expt/crabnet_matbench_expt_gap.csv", 4604, 0, 3),
    ("expt/qmpy_thermodata_ssub.dat", 2090, 0, 363),
])
def test_real_files_read_and_normalise(relative, n_rows, n_rejected, n_repeated):
    from matlake.ingest.records import RecordRejected

    ids, rejected = [], 0
    for raw in experimental.read(shared_data(relative)):
        try:
            ids.append(experimental.normalise(raw).record_id)
        except RecordRejected:
            rejected += 1
    assert (len(ids) + rejected, rejected) == (n_rows, n_rejected)
    assert len(set(ids)) == len(ids)
    assert sum("~" in i for i in ids) == n_repeated
