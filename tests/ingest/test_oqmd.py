"""OQMD: formula and fractional-composition CSVs, qmpy .dat tables and OPTIMADE pages, on hand-written fixtures."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from matlake import db
from matlake.errors import InputError
from matlake.ingest import oqmd
from matlake.ingest.framework import ingest
from matlake.ingest.records import RecordRejected
from tests.conftest import shared_data

CRABNET_VAL = "formula,target\nAl1Sm1Tm1,0.4875\nSr1Ti5,0.31\nN1O1Pu1Sr1,-2.05\nFe2O3,-1.7\n"  # values made up
CRABNET_TEST = "formula,target\nAl2Na1Sr1,0.12\nAu2Hg1Y1,-0.5500000000000001\nPd1Tl1U1,-7.5e-05\n"
ELEMNET = ("id,composition,target\n0,O0.555600Pr0.222200Pt0.222200,-1.85\n"
           "1,Ga0.250000Ge0.250000Rh0.500000,-0.49\n2,Al0.333333Sm0.333333Tm0.333333,0.51\n")
QMPY = "composition energy\nBr3K2Tl -1.25\nAl2Er -0.5\nZn 0\nAl2Er -0.5\n"


@pytest.fixture
def engine(tmp_path):
    engine = db.create_engine(f"duckdb:///{tmp_path / 'oqmd.duckdb'}")
    db.upgrade(engine)
    return engine


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def _rows(engine, sql: str, **params) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params).all()]


# ---- OPTIMADE fixtures: the v1 /structures response format, OQMD's provider fields ----------------------------

CUBIC = [[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]]


def resource(rid: str, sites: list[tuple[str, list[float]]], species: list[dict] | None = None, *,
             formula: str, lattice=CUBIC, **oqmd_fields) -> dict:
    """One OPTIMADE structures resource; ``sites`` are (species name, Cartesian position)."""
    names = [name for name, _ in sites]
    if species is None:
        species = [{"name": n, "chemical_symbols": [n], "concentration": [1.0]} for n in dict.fromkeys(names)]
    attributes = {
        "lattice_vectors": lattice, "cartesian_site_positions": [pos for _, pos in sites],
        "species_at_sites": names, "species": species, "chemical_formula_reduced": formula, "nsites": len(sites),
        "elements": sorted({s for sp in species for s in sp["chemical_symbols"]}),
        "nelements": len({s for sp in species for s in sp["chemical_symbols"]}),
        "dimension_types": [1, 1, 1], "nperiodic_dimensions": 3, "structure_features": [],
        "last_modified": "2023-01-01T00:00:00Z",
        **{f"_oqmd_{k}": v for k, v in oqmd_fields.items()},
    }
    return {"id": rid, "type": "structures", "attributes": attributes,
            "links": {"self": f"https://oqmd.org/optimade/v1/structures/{rid}"}}


def page(resources: list[dict], *, next_url: str | None, total: int) -> dict:
    return {
        "data": resources,
        "meta": {"api_version": "1.1.0", "query": {"representation": "/structures?filter=nelements<3"},
                 "more_data_available": next_url is not None, "data_returned": total, "data_available": 1000000,
                 "provider": {"name": "OQMD", "prefix": "oqmd", "description": "Open Quantum Materials Database"}},
        "links": {"next": next_url},
    }


NACL = resource("oqmd-1001", [("Na", [0, 0, 0]), ("Cl", [2.0, 2.0, 2.0])], formula="ClNa",
                entry_id=101, calculation_id=5001, delta_e=-1.9, stability=0.0, band_gap=5.1, spacegroup="Pm-3m")
FE = resource("oqmd-1002", [("Fe", [0, 0, 0]), ("Fe", [1.4, 1.4, 1.4])], formula="Fe",
              lattice=[[2.8, 0, 0], [0, 2.8, 0], [0, 0, 2.8]], entry_id=102, delta_e=0.0, stability=-0.01,
              band_gap=None)
ALLOY = resource("oqmd-1003", [("CuAu", [0, 0, 0])], formula="AuCu",
                 species=[{"name": "CuAu", "chemical_symbols": ["Cu", "Au"], "concentration": [0.5, 0.5]}],
                 lattice=[[0, 1.9, 1.9], [1.9, 0, 1.9], [1.9, 1.9, 0]], entry_id=103, delta_e=-0.05, stability=0.02)


def write_pages(folder: Path, pages: list[dict]) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = []
    for i, doc in enumerate(pages, start=1):
        paths.append(folder / f"structures_page_{i}.json")
        paths[-1].write_text(json.dumps(doc, indent=1))
    return paths


# ---- tables --------------------------------------------------------------------------------------------------


def test_formula_csv_ids_are_canonical_compositions(engine, tmp_path):
    path = _write(tmp_path / "crabnet_OQMD_Formation_Enthalpy_val.csv", CRABNET_VAL + "O3Fe2,-1.8\n")
    [s] = ingest(oqmd, [path], engine=engine)
    assert (s.dataset, s.n_read, s.n_inserted, s.n_rejected) == ("oqmd_formation_formula_csv_val", 5, 4, 1)
    assert s.rejects_by_reason == {"duplicate_id": 1}  # Fe2O3 spelled twice: the first row is kept
    rows = _rows(engine, "SELECT source_record_id, formula, property, value, unit, method FROM properties_current "
                         "ORDER BY 1")
    assert rows[0] == ("Fe2O3", "Fe2O3", "formation_energy_per_atom", -1.7, "eV/atom", "PBE")
    assert {r[0] for r in rows} == {"Fe2O3", "SmTmAl", "SrTi5", "SrPuNO"}
    [raw_formula] = _rows(engine, "SELECT formula_raw FROM materials_current WHERE source_record_id = 'SmTmAl'")
    assert raw_formula == ("Al1Sm1Tm1",)


def test_split_files_are_datasets_that_never_withdraw_each_other(engine, tmp_path):
    val = _write(tmp_path / "crabnet_OQMD_Formation_Enthalpy_val.csv", CRABNET_VAL)
    test = _write(tmp_path / "crabnet_OQMD_Formation_Enthalpy_test.csv", CRABNET_TEST)
    summaries = ingest(oqmd, [val, test], engine=engine)
    assert [s.dataset for s in summaries] == ["oqmd_formation_formula_csv_val", "oqmd_formation_formula_csv_test"]
    [again] = ingest(oqmd, [test], engine=engine)  # a full release of the test split alone
    assert (again.n_unchanged, again.n_withdrawn) == (3, 0)
    (tmp_path / "v2").mkdir()
    shorter = _write(tmp_path / "v2" / val.name, CRABNET_VAL.replace("Fe2O3,-1.7\n", ""))
    [v2] = ingest(oqmd, [shorter], engine=engine)
    assert (v2.n_unchanged, v2.n_withdrawn) == (3, 1)
    assert _rows(engine, "SELECT source_record_id, dataset FROM materials_withdrawn") == [
        ("Fe2O3", "oqmd_formation_formula_csv_val")]
    assert len(_rows(engine, "SELECT 1 FROM materials_current")) == 6


def test_fractional_compositions_meet_the_same_material(engine, tmp_path):
    crabnet = _write(tmp_path / "crabnet_OQMD_Formation_Enthalpy_val.csv", CRABNET_VAL)
    elemnet = _write(tmp_path / "aviary_oqmd_test.csv", ELEMNET)
    ingest(oqmd, [crabnet, elemnet], engine=engine)
    rows = _rows(engine, "SELECT dataset, value FROM properties_current WHERE source_record_id = 'SmTmAl' ORDER BY 1")
    assert rows == [("oqmd_formation_composition_csv_test", 0.51), ("oqmd_formation_formula_csv_val", 0.4875)]
    assert _rows(engine, "SELECT source_record_id FROM material WHERE source_record_id = 'Pr2Pt2O5'") == [
        ("Pr2Pt2O5",)]  # 5/9 written as 0.555600
    extra = _rows(engine, "SELECT r.extra FROM material_revision r JOIN material m ON m.id = r.material_id "
                          "WHERE m.source_record_id = 'Pr2Pt2O5'")
    assert _json(extra[0][0]) == {"row_id": "0"}


@pytest.mark.parametrize("header", [True, False])
def test_qmpy_dat_with_or_without_header(engine, tmp_path, header):
    text = QMPY if header else QMPY.split("\n", 1)[1]
    [s] = ingest(oqmd, [_write(tmp_path / "qmpy_thermodata_legacy.dat", text)], engine=engine)
    assert (s.dataset, s.n_read, s.n_inserted, s.rejects_by_reason) == ("oqmd_formation_qmpy_dat", 4, 3,
                                                                         {"duplicate_id": 1})
    assert _rows(engine, "SELECT value FROM properties_current WHERE source_record_id = 'Zn'") == [(0.0,)]


# ---- OPTIMADE ------------------------------------------------------------------------------------------------


def test_optimade_pages_become_structures_and_properties(engine, tmp_path):
    pages = write_pages(tmp_path / "pages", [page([NACL, FE], next_url="https://oqmd.org/optimade/v1/structures?"
                                                                         "page_offset=2", total=3),
                                             page([ALLOY], next_url=None, total=3)])
    assert oqmd.page_files(tmp_path / "pages") == pages
    [s] = ingest(oqmd, pages, engine=engine)
    assert (s.dataset, s.n_read, s.n_inserted, s.n_rejected) == ("oqmd_optimade_structures", 3, 3, 0)
    structures = _rows(engine, "SELECT source_record_id, kind, formula, n_sites, is_ordered, calculation_id "
                               "FROM structures_current ORDER BY 1")
    assert structures == [("oqmd-1001", "relaxed", "NaCl", 2, True, "5001"), ("oqmd-1002", "relaxed", "Fe", 2, True,
                                                                              None),
                          ("oqmd-1003", "relaxed", "CuAu", 1, False, None)]
    props = _rows(engine, "SELECT source_record_id, property, value, unit, structure_id IS NOT NULL "
                          "FROM properties_current ORDER BY 1, 2")
    assert ("oqmd-1001", "band_gap", 5.1, "eV", True) in props
    assert ("oqmd-1002", "energy_above_hull", -0.01, "eV/atom", True) in props  # below the hull: kept as is
    assert not any(p[0] == "oqmd-1002" and p[1] == "band_gap" for p in props)  # null means unknown
    [(extra,)] = _rows(engine, "SELECT r.extra FROM material_revision r JOIN material m ON m.id = r.material_id "
                               "WHERE m.source_record_id = 'oqmd-1001'")
    assert _json(extra)["_oqmd_entry_id"] == 101


def test_page_files_orders_numerically_and_refuses_incomplete_sets(tmp_path):
    docs = [page([NACL], next_url=f"https://oqmd.org/optimade/v1/structures?page_offset={i}", total=11)
            for i in range(1, 11)] + [page([FE], next_url=None, total=11)]
    paths = write_pages(tmp_path / "all", docs)
    assert oqmd.page_files(tmp_path / "all") == paths  # page_2 before page_10
    paths[4].unlink()
    with pytest.raises(InputError, match="10 pages hold 10 resources"):
        oqmd.page_files(tmp_path / "all")
    paths[-1].unlink()
    with pytest.raises(InputError, match="no links.next"):
        oqmd.page_files(tmp_path / "all")


@pytest.mark.parametrize("change, reason", [
    (lambda r: r["attributes"]["species"][0].update(chemical_symbols=["Xx"]), "unknown_element"),
    (lambda r: r["attributes"].update(nsites=3), "inconsistent_structure"),
    (lambda r: r["attributes"].update(_oqmd_delta_e=float("nan")), "non_finite_value"),
    (lambda r: r["attributes"].update(_oqmd_delta_e="-1.9 eV"), "non_numeric_value"),
    (lambda r: r["attributes"].update(chemical_formula_reduced="NaCl2"), "inconsistent_formula"),
    (lambda r: r["attributes"].update(lattice_vectors=[[1, 0, 0], [2, 0, 0], [0, 0, 1]]), "non_positive_volume"),
    (lambda r: r["attributes"].update(dimension_types=[1, 1, 0]), "non_periodic_structure"),
    (lambda r: r.update(type="references"), "wrong_type"),
])
def test_bad_optimade_resources_are_rejected_by_reason(change, reason):
    bad = json.loads(json.dumps(NACL))
    change(bad)
    raw = next(oqmd._decode_page(json.dumps(page([bad], next_url=None, total=1)), Path("p.json")))
    with pytest.raises(RecordRejected) as err:
        oqmd.normalise(raw)
    assert err.value.reason_code == reason
    assert err.value.key == "oqmd-1001" or reason == "wrong_type"


# ---- the real files: every row reads and normalises (no database, so this stays fast) ----------------------


@pytest.mark.shared_data
@pytest.mark.parametrize("relative, n_rows, n_duplicate_ids", [
    ("oqmd/crabnet_OQMD_Formation_Enthalpy_val.csv", 5000, 0),  # a head only: the bench reads the whole files
    ("oqmd/aviary_oqmd_test.csv", 5000, 0),
    ("oqmd/qmpy_thermodata_legacy.dat", 15436, 34),
])
def test_real_files_read_and_normalise(relative, n_rows, n_duplicate_ids):
    path = shared_data(relative)
    records = [oqmd.normalise(raw) for raw in itertools.islice(oqmd.read(path), n_rows)]
    assert len(records) == n_rows
    assert len(records) - len({r.record_id for r in records}) == n_duplicate_ids
    assert all(r.properties[0].unit == "eV/atom" for r in records)
