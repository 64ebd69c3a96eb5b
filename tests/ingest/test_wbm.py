"""WBM ingester: the summary table, entries and structures, the symmetry table and model predictions."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from matlake import db
from matlake.ingest import mp, wbm
from matlake.ingest.framework import ingest
from matlake.ingest.records import RawRecord, RecordRejected
from tests.conftest import shared_data

from .test_mp import LI2O, SI, cse, reference_entries, write_json

SUMMARY_HEADER = (
    "material_id,formula,n_sites,volume,uncorrected_energy,e_form_per_atom_wbm,e_above_hull_wbm,bandgap_pbe,"
    "wyckoff_spglib_initial_structure,uncorrected_energy_from_cse,e_correction_per_atom_mp2020,"
    "e_correction_per_atom_mp_legacy,e_form_per_atom_uncorrected,e_form_per_atom_mp2020_corrected,"
    "e_above_hull_mp2020_corrected_ppd_mp,site_stats_fingerprint_init_final_norm_diff,wyckoff_spglib,"
    "unique_prototype\n"
)
SUMMARY_ROWS = [
    "wbm-1-1,Li2 O1,3,24.49,-14.0,-1.95,0.08,4.9,A2B_cF12_225_c_a,-14.0,-0.229,-0.23,-1.75,-1.979,0.05,0.01,"
    "A2B_cF12_225_c_a,False",
    "wbm-3-70804,Zn1 Ti1 N2,8,78.2,-52.1,-0.81,0.02,,ABC2_hP8_186_b_b_ab,-52.1,0.0,0.0,-0.80,-0.80,0.01,0.12,"
    "ABC2_hP8_186_b_b_ab,True",
    "wbm-x-1,Si2,2,40.9,-10.8,0.0,0.0,0.6,A_cF8_227_a,-10.8,0,0,0,0,0,0,A_cF8_227_a,False",
    "wbm-2-5,Si2,2,40.9,nan,0.0,0.0,0.6,A_cF8_227_a,-10.8,0,0,0,0,0,0,A_cF8_227_a,False",
    "wbm-1-1,Li2 O1,3,24.49,-14.0,-1.95,0.08,4.9,A2B_cF12_225_c_a,-14.0,-0.229,-0.23,-1.75,-1.979,0.05,0.01,"
    "A2B_cF12_225_c_a,False",
]
SYMMETRY = (
    "material_id,spg_num,hall_num,international_spg_name,wyckoff_symbols,n_sym_ops,n_rot_syms,n_trans_syms,"
    "hall_symbol,symprec,angle_tolerance\n"
    "wbm-1-1,225,523,\"['m-3m', '-43m', '-43m']\",\"['a', 'c', 'c']\",48,48,48,F m -3 m,0.01,\n"
    "wbm-9-9,225,523,\"['m-3m']\",\"['a']\",48,48,48,F m -3 m,0.01,\n"
    "wbm-3-70804,0,1,\"['3m.']\",\"['b']\",12,12,12,P 6c -2c,0.01,\n"
)
MEGNET = "material_id,e_form_per_atom_megnet\nwbm-1-1,-1.9512\nwbm-3-70804,\nwbm-7-1,-0.5\n"


@pytest.fixture
def engine(any_url):
    engine = db.create_engine(any_url)
    db.upgrade(engine)
    return engine


def write_summary(folder: Path, rows: list[str] = SUMMARY_ROWS, name: str = "wbm-summary.csv.gz") -> Path:
    path = folder / name
    path.write_bytes(gzip.compress((SUMMARY_HEADER + "\n".join(rows) + "\n").encode()))
    return path


def records(path: Path) -> dict:
    out = {}
    for raw in wbm.read(path):
        try:
            out.setdefault(raw.key, wbm.normalise(raw))
        except RecordRejected as exc:
            out.setdefault(raw.key, exc.reason_code)
    return out


def test_batch_comes_from_the_id():
    assert wbm.batch_of("wbm-3-70804") == {"batch": 3, "batch_index": 70804}
    for bad in ("wbm-0-1", "mp-149", "wbm-1", None):
        with pytest.raises(RecordRejected, match="not a WBM id"):
            wbm.batch_of(bad)


def test_summary_rows_become_properties_with_their_schemes(engine, tmp_path):
    path = write_summary(tmp_path)
    assert wbm.dataset(path) == wbm.SUMMARY
    rec = records(path)["wbm-1-1"]
    assert rec.extra["batch"] == 1 and rec.extra["wyckoff_spglib"] == "A2B_cF12_225_c_a"
    assert rec.extra["n_sites"] == 3 and rec.extra["unique_prototype"] is False
    by_column = {p.extra["column"]: p for p in rec.properties}
    assert set(by_column) == {"uncorrected_energy", "e_form_per_atom_wbm", "e_above_hull_wbm", "bandgap_pbe",
                              "e_form_per_atom_uncorrected", "e_form_per_atom_mp2020_corrected",
                              "e_above_hull_mp2020_corrected_ppd_mp"}
    mp2020 = by_column["e_form_per_atom_mp2020_corrected"]
    assert (mp2020.property, mp2020.value, mp2020.correction_scheme) == (
        "formation_energy_per_atom", -1.979, "MaterialsProject2020Compatibility")
    assert by_column["e_form_per_atom_wbm"].correction_scheme is None
    assert by_column["bandgap_pbe"].method == "PBE"
    zn = records(path)["wbm-3-70804"]
    assert "bandgap_pbe" not in {p.extra["column"] for p in zn.properties}  # empty cell: no value, no reject

    [s] = ingest(wbm, [path], engine=engine)
    assert (s.n_read, s.n_inserted, s.n_rejected) == (5, 2, 3)
    assert s.rejects_by_reason == {"malformed_id": 1, "non_finite_value": 1, "duplicate_id": 1}
    with engine.connect() as conn:
        extra = conn.execute(sa.text(
            "SELECT r.extra FROM material_revision r JOIN material m ON m.id = r.material_id "
            "WHERE m.source_record_id = 'wbm-3-70804'")).scalar()
    assert (json.loads(extra) if isinstance(extra, str) else extra)["batch"] == 3


def test_symmetry_and_predictions_take_formulas_from_the_summary_beside_them(engine, tmp_path):
    summary = write_summary(tmp_path)
    symmetry = tmp_path / "dft-geo-opt-symprec=1e-2-moyo=0.3.1.csv"
    symmetry.write_text(SYMMETRY)
    megnet = tmp_path / "2022-11-18-megnet-wbm-IS2RE.csv.gz"
    megnet.write_bytes(gzip.compress(MEGNET.encode()))
    assert wbm.dataset(symmetry) == "symmetry_moyo" and wbm.dataset(megnet) == "predictions_megnet_is2re"

    sym = records(symmetry)
    assert sym["wbm-9-9"].formula is None and sym["wbm-3-70804"] == "invalid_spacegroup"  # not in the summary
    rec = sym["wbm-1-1"]
    assert rec.formula == "Li2 O1"
    assert rec.extra["spg_num"] == 225 and rec.extra["wyckoff_symbols"] == ["a", "c", "c"]
    assert rec.extra["site_symmetry_symbols"] == ["m-3m", "-43m", "-43m"]
    assert (rec.extra["symmetry_backend"], rec.extra["symmetry_backend_version"], rec.extra["symprec"]) == (
        "moyo", "0.3.1", 0.01)
    assert rec.extra["structure"] == "dft_relaxed"

    preds = records(megnet)
    assert preds["wbm-3-70804"] == "missing_value" and preds["wbm-7-1"].formula is None
    p = preds["wbm-1-1"].properties[0]
    assert (p.property, p.value, p.method, p.correction_scheme) == (
        "formation_energy_per_atom", -1.9512, "model", "MaterialsProject2020Compatibility")
    assert p.extra["model"] == "MEGNet" and p.extra["task"] == "IS2RE"

    runs = ingest(wbm, [summary, symmetry, megnet], engine=engine)
    assert [(r.dataset, r.n_accepted, r.n_rejected) for r in runs] == [
        ("summary", 2, 3), ("symmetry_moyo", 2, 1), ("predictions_megnet_is2re", 2, 1)]
    with engine.connect() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM property_value WHERE method = 'model'")).scalar()
        formulas = dict(conn.execute(sa.text("SELECT source_record_id, formula FROM materials_current")).all())
    assert n == 2
    assert formulas == {"wbm-1-1": "Li2O", "wbm-3-70804": "TiZnN2", "wbm-9-9": None, "wbm-7-1": None}


def _current(engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql)).all()]


def test_symmetry_and_predictions_load_alone_and_join_by_id(engine, tmp_path):
    alone = tmp_path / "alone"
    alone.mkdir()
    symmetry = alone / "dft-geo-opt-symprec=1e-2-moyo=0.3.1.csv"
    symmetry.write_text(SYMMETRY)
    megnet = alone / "2022-11-18-megnet-wbm-IS2RE.csv.gz"
    megnet.write_bytes(gzip.compress(MEGNET.encode()))
    assert wbm.is_annotation(wbm.dataset(symmetry)) and not wbm.is_annotation(wbm.SUMMARY)
    assert all(r.formula is None for r in records(symmetry).values() if not isinstance(r, str))

    runs = ingest(wbm, [symmetry, megnet], engine=engine)
    assert [(r.n_read, r.n_inserted, r.n_rejected, r.rejects_by_reason) for r in runs] == [
        (3, 2, 1, {"invalid_spacegroup": 1}), (3, 2, 1, {"missing_value": 1})]
    assert _current(engine, "SELECT source_record_id, composition_id, formula FROM materials_current ORDER BY 1") == [
        ("wbm-1-1", None, None), ("wbm-7-1", None, None), ("wbm-9-9", None, None)]
    assert _current(engine, "SELECT count(*) FROM composition") == [(0,)]
    assert _current(engine, "SELECT source_record_id, value, formula FROM properties_current ORDER BY 1") == [
        ("wbm-1-1", -1.9512, None), ("wbm-7-1", -0.5, None)]

    # the summary arrives later: the same materials get their compositions, the annotations stay attached
    write_summary(tmp_path)
    [summary] = ingest(wbm, [tmp_path / "wbm-summary.csv.gz"], engine=engine)
    assert summary.n_inserted == 2
    assert _current(engine, "SELECT source_record_id, formula, dataset FROM materials_current ORDER BY 1") == [
        ("wbm-1-1", "Li2O", "summary"), ("wbm-3-70804", "TiZnN2", "summary"),
        ("wbm-7-1", None, "predictions_megnet_is2re"), ("wbm-9-9", None, "symmetry_moyo")]
    assert _current(engine, "SELECT count(*) FROM material") == [(4,)]
    [(extra,)] = _current(engine, "SELECT r.extra FROM material_revision r JOIN material m ON m.id = r.material_id "
                                  "WHERE m.source_record_id = 'wbm-1-1' AND r.dataset = 'symmetry_moyo'")
    assert (json.loads(extra) if isinstance(extra, str) else extra)["spg_num"] == 225

    # re-reading a changed symmetry file updates and withdraws annotation records like any others
    symmetry.write_text(SYMMETRY.replace("wbm-1-1,225,523", "wbm-1-1,221,523").replace(
        "wbm-9-9,225,523,\"['m-3m']\",\"['a']\",48,48,48,F m -3 m,0.01,\n", ""))
    [again] = ingest(wbm, [symmetry], engine=engine)
    assert (again.n_updated, again.n_withdrawn, again.n_rejected) == (1, 1, 1)
    assert _current(engine, "SELECT source_record_id FROM materials_withdrawn") == [("wbm-9-9",)]


def test_entries_and_initial_structures_in_pandas_json(engine, tmp_path):
    write_json(tmp_path / "2023-02-07-mp-elemental-reference-entries.json", reference_entries())
    entries = write_json(tmp_path / "wbm-computed-structure-entries.json", {  # pandas' default "columns" orient
        "material_id": {"0": "wbm-1-1", "1": "wbm-1-2"},
        "computed_structure_entry": {"0": cse("wbm-1-1", LI2O, -14.0, entry_id="wbm-1-1"),
                                     "1": cse("wbm-1-2", SI, float("nan"), entry_id="wbm-1-2")}})
    initial = write_json(tmp_path / "wbm-init-structs.json", [  # records orient
        {"material_id": "wbm-1-1", "formula_from_cse": "Li2O", "initial_structure": LI2O},
        {"material_id": "wbm-1-3", "formula_from_cse": "Si", "initial_structure": {"lattice": {}}}])
    assert (wbm.dataset(entries), wbm.dataset(initial)) == (wbm.RELAXED_ENTRIES, wbm.INITIAL_STRUCTURES)
    recs = records(entries)
    assert recs["wbm-1-2"] == "non_finite_value"
    rec = recs["wbm-1-1"]
    e_form = [p for p in rec.properties if p.property == "formation_energy_per_atom"][0]
    assert e_form.value == pytest.approx(-1.979, abs=1e-12)  # as for the MP entry: same scheme, same references
    assert rec.structures[0].kind == "relaxed" and rec.extra["batch"] == 1
    init = records(initial)
    assert init["wbm-1-3"] == "missing_structure"
    assert [s.kind for s in init["wbm-1-1"].structures] == ["initial"] and init["wbm-1-1"].formula == "Li2O"
    runs = ingest(wbm, [entries, initial], engine=engine)
    assert [(r.dataset, r.n_accepted, r.n_rejected) for r in runs] == [
        ("relaxed_entries", 1, 1), ("initial_structures", 1, 1)]


def test_combined_file_gives_both_structures(tmp_path):
    combined = write_json(tmp_path / "wbm-cses+init-structs.json", {
        "index": [0], "columns": ["material_id", "computed_structure_entry", "initial_structure"],
        "data": [["wbm-1-1", cse("wbm-1-1", LI2O, -14.0), LI2O]]})
    rec = records(combined)["wbm-1-1"]
    assert [s.kind for s in rec.structures] == ["relaxed", "initial"]
    assert "formation_energy_not_computed" in rec.extra  # no MP references beside this file


# ---- the shared WBM files ---------------------------------------------------------------------------------------


def _first_rows(path: Path, kind: str, n: int) -> list[RawRecord]:
    out = []
    for line, row, problem in mp.csv_rows(path):
        payload = {"kind": kind, "row": row, "problem": problem, "line": line, "formula": "NaCl",
                   "context": wbm._file_context(path, kind)}
        out.append(RawRecord(str(path), line - 2, payload, key=row["material_id"]))
        if len(out) == n:
            break
    return out


@pytest.mark.shared_data
def test_shared_symmetry_and_megnet_rows_parse():
    symmetry = shared_data("wbm/mbd_wbm_dft-geo-opt-symprec1e-2-moyo.csv.gz")
    megnet = shared_data("wbm/mbd_megnet-wbm-IS2RE.csv.gz")
    assert wbm.dataset(symmetry) == "symmetry_moyo" and wbm.dataset(megnet) == "predictions_megnet_is2re"
    # the files carry no compositions: rows are parsed here with a stand-in formula
    for raw in _first_rows(symmetry, "symmetry_moyo", 3000):
        rec = wbm.normalise(raw)
        assert 1 <= rec.extra["spg_num"] <= 230
        assert len(rec.extra["wyckoff_symbols"]) == len(rec.extra["site_symmetry_symbols"])
    preds, missing = [], 0
    for raw in _first_rows(megnet, "predictions_megnet_is2re", 3000):
        try:
            preds.append(wbm.normalise(raw))
        except RecordRejected as exc:  # the structures Matbench Discovery dropped have no prediction
            assert exc.reason_code == "missing_value"
            missing += 1
    assert len(preds) + missing == 3000 and missing < 30
    assert {p.extra["batch"] for p in preds} == {1}
    assert all(p.properties[0].method == "model" for p in preds)


@pytest.mark.shared_data
@pytest.mark.slow
def test_shared_symmetry_and_megnet_files_load_on_their_own(tmp_path):
    """The two published files, whole, into one database: every row accounted for, and the only rejects are the
    structures Matbench Discovery has no MEGNet prediction for."""
    symmetry = shared_data("wbm/mbd_wbm_dft-geo-opt-symprec1e-2-moyo.csv.gz")
    megnet = shared_data("wbm/mbd_megnet-wbm-IS2RE.csv.gz")
    engine = db.create_engine(f"duckdb:///{tmp_path / 'wbm.duckdb'}")
    db.upgrade(engine)
    sym, pred = ingest(wbm, [symmetry, megnet], engine=engine)
    for s in (sym, pred):
        assert s.status == "succeeded" and s.n_read == s.n_accepted + s.n_rejected
    assert (sym.n_read, sym.n_inserted, sym.n_rejected) == (256_963, 256_963, 0)
    assert (pred.n_read, pred.n_rejected, pred.rejects_by_reason) == (257_487, 524, {"missing_value": 524})
    with engine.connect() as conn:
        n_materials, n_both, n_formula = conn.execute(sa.text(
            "SELECT count(*), count(*) FILTER (WHERE n = 2), count(formula) FROM (SELECT m.id, count(*) AS n, "
            "max(mc.formula) AS formula FROM material m JOIN material_revision r ON r.material_id = m.id "
            "JOIN materials_current mc ON mc.material_id = m.id GROUP BY m.id) t")).one()
    # the ids without a prediction are the ones the symmetry table lacks: every material has both, by id
    assert (n_materials, n_both, n_formula) == (256_963, 256_963, 0)
