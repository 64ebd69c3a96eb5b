"""The cuprate pipeline over the database: geometry rows, versioned calibrations, registered estimates.

Fixtures are La2CuO4-like I4/mmm cells whose apical distance follows a known law d = 0.20 c + 0.30 a - 1.38, written
as CIFs in 3DSC's naming and ingested through the SuperCon source, plus a lattice table in the SuperCon format.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from matlake import db
from matlake.featurestore.store import FeatureStore
from matlake.ingest import supercon
from matlake.ingest.framework import ingest
from matlake.modelling import cuprates
from matlake.modelling.cuprates import LatticeUnusable, axes_from_lattice, axes_from_structure
from matlake.version import code_version
from tests.conftest import shared_data

ALPHA, BETA, GAMMA = 0.20, 0.30, -1.38
LA214 = [(3.76, 13.10), (3.78, 13.30), (3.80, 13.15), (3.82, 13.25), (3.84, 13.05)]
EXTRA_LA214 = (3.79, 13.40)
JITTER = (1e-4, -1e-4, 5e-5, -5e-5, 2e-5, -2e-5)
"""Added to the apical distances: the Huber optimiser takes ~10x longer on residuals that are exactly zero."""
SQRT2 = math.sqrt(2)


def law(a: float, c: float) -> float:
    return ALPHA * c + BETA * a + GAMMA


def la2cuo4(a: float, c: float, jitter: float = 0.0) -> Structure:
    """T-La2CuO4 (I4/mmm) with the apical O at d = law(a, c) + jitter above Cu: two octahedral Cu per cell."""
    return Structure.from_spacegroup("I4/mmm", Lattice.tetragonal(a, c), ["La", "Cu", "O", "O"],
                                     [[0, 0, 0.3607], [0, 0, 0], [0, 0.5, 0], [0, 0, (law(a, c) + jitter) / c]])


def hg1201(a: float = 3.88, c: float = 9.50) -> Structure:
    """HgBa2CuO4 (P4/mmm): one octahedral Cu, apical (0.5 - 0.21) c = 2.755 A."""
    return Structure.from_spacegroup("P4/mmm", Lattice.tetragonal(a, c), ["Hg", "Ba", "Cu", "O", "O"],
                                     [[0, 0, 0], [0.5, 0.5, 0.30], [0, 0, 0.5], [0.5, 0, 0.5], [0, 0, 0.21]])


def _cif(path: Path, structure: Structure) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(CifWriter(structure)))
    return path


THREEDSC_HEADER = ("formula_sc,mp_id,synth_doped,a,b,c,alpha,beta,gamma,volume,sg_cif,file,tc_from_3dsc_icsd,"
                   "tc_from_stanev,spacegroup,sg_number,a_conv,b_conv,c_conv,mp_reduced_formula\n")

LATTICE_TABLE = """\
formula,Tc,a,b,c,spacegroup
La1.85Sr0.15CuO4,38,3.78,3.78,13.23,I4/mmm
La2CuO4,0,5.35,13.15,5.40,Cmce
La1.9Sr0.1CuO4,25,3.79,3.79,26.40,I4/mmm
La1.95Sr0.05CuO4,20,3.785,3.785,13.21,
La1.9Ba0.1CuO4,30,3.80,3.81,13.20,C2/m
HgBa2CuO4,94,3.88,3.88,9.50,P4/mmm
MgB2,39,3.086,3.086,3.52,P6/mmm
"""
# record -> (a*, c, stacking axis, c multiple)
EXPECTED_ROWS = {
    "lattice_tc:La1.85Sr0.15CuO4": (3.78, 13.23, "c", 1),
    "lattice_tc:La2CuO4": ((5.35 + 5.40) / 2 / SQRT2, 13.15, "b", 1),
    "lattice_tc:La1.9Sr0.1CuO4": (3.79, 13.20, "c", 2),
    "lattice_tc:La1.95Sr0.05CuO4": (3.785, 13.21, "c", 1),
}


# ---- the lattice convention --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lengths", "group", "family", "expected"), [
    ((3.78, 3.78, 13.23), "I4/mmm", None, (3.78, 13.23, "c", 1)),
    ((3.82, 3.89, 11.68), "Pmmm", "Y123", ((3.82 + 3.89) / 2, 11.68, "c", 1)),
    ((5.356, 13.104, 5.543), "Cmce", "La214 (T)", ((5.356 + 5.543) / 2 / SQRT2, 13.104, "b", 1)),
    ((5.356, 13.104, 5.543), None, "La214 (T)", ((5.356 + 5.543) / 2 / SQRT2, 13.104, "b", 1)),
    ((3.84, 27.2, 3.87), "Cmmm", "Y124", ((3.84 + 3.87) / 2, 27.2, "b", 1)),
    ((3.81, 3.81, 39.52), "P4/mmm", "La214 (T)", (3.81, 39.52 / 3, "c", 3)),
    ((3.90, 3.90, 23.78), "P4/mmm", "RE123", (3.90, 11.89, "c", 2)),
])
def test_axes_from_lattice(lengths, group, family, expected) -> None:
    axes = axes_from_lattice(*lengths, group, family)
    assert (axes.a, axes.c) == pytest.approx(expected[:2])
    assert (axes.axis, axes.c_multiple) == expected[2:]
    assert axes.in_plane == pytest.approx(expected[0] / 2)


@pytest.mark.parametrize(("lengths", "group", "family", "reason"), [
    ((3.80, 3.81, 13.2), "C2/m", None, "not_tetragonal_or_orthorhombic"),
    ((7.70, 3.85, 11.7), "Pmmm", None, "no_cuo2_square"),  # in-plane 2 x 1 supercell: no square edge
    ((3.89, 3.89, 12.12), "P4/mmm", "Y124", "c_not_family_cell"),  # a YBa2Cu3O6 cell labelled Y124
    ((3.80, 3.80, 19.9), "P4/mmm", "La214 (T)", "c_not_family_cell"),  # 1.5 cells
    ((3.80, -3.80, 13.2), "I4/mmm", None, "invalid_lattice"),
])
def test_axes_from_lattice_refuses(lengths, group, family, reason) -> None:
    with pytest.raises(LatticeUnusable) as caught:
        axes_from_lattice(*lengths, group, family)
    assert caught.value.reason == reason


def test_axes_from_structure_reads_the_conventional_cell_of_any_cell() -> None:
    conventional = la2cuo4(3.80, 13.20)
    primitive = conventional.get_primitive_structure()
    assert primitive.lattice.c < 8  # the body-centred primitive cell: no lattice vector is the stacking axis
    for structure in (conventional, primitive):
        axes = axes_from_structure(structure, "La214 (T)")
        assert (axes.a, axes.c, axes.axis, axes.c_multiple) == (pytest.approx(3.80), pytest.approx(13.20), "c", 1)
    stacked = conventional.copy()
    stacked.make_supercell([1, 1, 2])
    assert axes_from_structure(stacked, "La214 (T)").c_multiple == 1  # spglib's conventional cell is the 1x cell


def test_axes_from_structure_sqrt2_cell_stacked_along_b() -> None:
    """An orthorhombic sqrt2 x sqrt2 La2CuO4 cell (Fmmm) with the layers stacked along b."""
    structure = Structure.from_spacegroup("Fmmm", Lattice.orthorhombic(5.35, 13.20, 5.45),
                                          ["La", "Cu", "O", "O"],
                                          [[0, 0.3607, 0], [0, 0, 0], [0.25, 0, 0.25], [0, 0.1828, 0]])
    axes = axes_from_structure(structure, "La214 (T)")  # spglib (symprec 0.1) may read it as tetragonal
    assert (axes.a, axes.c) == pytest.approx(((5.35 + 5.45) / 2 / SQRT2, 13.20), abs=1e-3)
    row = axes_from_lattice(*structure.lattice.abc, "Fmmm", "La214 (T)")
    assert (row.a, row.c, row.axis) == (pytest.approx(axes.a, abs=1e-3), pytest.approx(axes.c), "b")


def test_axes_from_structure_of_an_infinite_layer_cell_whose_c_is_shorter_than_a() -> None:
    """CaCuO2 (P4/mmm, a = 3.86, c = 3.20 A): the most widely spaced lattice planes are the (100) planes, so only the
    CuO4 squares say that c is the stacking axis."""
    structure = Structure(Lattice.tetragonal(3.86, 3.20), ["Ca", "Cu", "O", "O"],
                          [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0], [0, 0.5, 0]])
    axes = axes_from_structure(structure)
    assert (axes.a, axes.c, axes.axis) == (pytest.approx(3.86), pytest.approx(3.20), "c")


@pytest.mark.shared_data
def test_mp_cmce_la2cuo4_structure_and_its_3dsc_lattice_row_agree() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structure = Structure.from_file(shared_data("cuprates/Cu1La2O4-MP-mp-36480.cif"))
    axes = axes_from_structure(structure, "La214 (T)")
    row = axes_from_lattice(5.3563, 13.1039, 5.5434, "Cmce", "La214 (T)")  # 3DSC's a_conv, b_conv, c_conv
    assert (axes.axis, row.axis) == ("b", "b")
    assert (axes.a, axes.c) == pytest.approx((row.a, row.c), abs=1e-3)


def test_cross_validated_mae() -> None:
    a = [p[0] for p in LA214]
    c = [p[1] for p in LA214]
    d = [law(*p) + jitter for p, jitter in zip(LA214, JITTER)]
    assert cuprates.cross_validated_mae("La214 (T)", a, c, d) == pytest.approx(0.0, abs=1e-3)
    assert cuprates.cross_validated_mae("La214 (T)", a[:3], c[:3], d[:3]) is None  # 2 points per training fold


# ---- the pipeline ------------------------------------------------------------------------------------------------


@pytest.fixture
def engine(any_url):
    engine = db.create_engine(any_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()


def _inputs(tmp_path: Path, la214: list[tuple[float, float]]) -> list[Path]:
    """CIFs (one with a 3DSC Tc table beside it, so its family comes from its superconductor row), a Hg1201 CIF,
    a non-cuprate CIF."""
    paths = []
    for k, (a, c) in enumerate(la214):
        if k == 2:
            stem = "Cu1La1.85Sr0.15O4-MP-mp-90002"
            folder = tmp_path / "with_tc"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "3dsc_mp_lattice_tc_derived.csv").write_text(THREEDSC_HEADER + (
                f"Cu1La1.85Sr0.15O4,mp-90002,False,6.9,6.9,6.9,147,147,32,190,I4/mmm,{stem}.cif,37.5,38.0,I4/mmm,"
                f"139,{a},{a},{c},La2CuO4\n"))
        else:
            stem, folder = f"Cu1La2O4-MP-mp-9000{k}", tmp_path / "cifs"
        paths.append(_cif(folder / f"{stem}.cif", la2cuo4(a, c, JITTER[k])))
    paths.append(_cif(tmp_path / "cifs" / "Ba2Cu1Hg1O4-MP-mp-90010.cif", hg1201()))
    paths.append(_cif(tmp_path / "cifs" / "Nb3Sn1-MP-mp-90011.cif", Structure.from_spacegroup(
        "Pm-3n", Lattice.cubic(5.29), ["Nb", "Sn"], [[0.25, 0, 0.5], [0, 0, 0]])))
    return paths


def _geometry(engine) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT m.source_record_id, g.cu_site_index, g.in_plane_cu_o_angstrom, g.apical_cu_o_angstrom, "
            "g.n_apical, g.snapshot_run_id, g.code_version FROM cuprate_geometry g "
            "JOIN structure st ON st.id = g.structure_id JOIN material m ON m.id = st.material_id "
            "ORDER BY g.id")).all()
    found: dict[str, list[tuple]] = {}
    for record_id, *values in rows:
        found.setdefault(record_id.split(":", 1)[1], []).append(tuple(values))
    return found


def _calibrations(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT family, version, n_structures, alpha, beta, gamma, mae_angstrom FROM cuprate_calibration "
            "ORDER BY family, version")).all()]


def test_pipeline_geometry_calibrations_estimates(tmp_path, engine, caplog) -> None:
    store = FeatureStore(tmp_path / "features", engine)
    ingest(supercon, _inputs(tmp_path, LA214), engine=engine)
    [table_run] = ingest(supercon, [_write(tmp_path / "lattice.csv", LATTICE_TABLE)], engine=engine)
    assert table_run.n_inserted == 7

    with caplog.at_level(logging.INFO, logger="matlake.modelling.cuprates"):
        summary = cuprates.run_pipeline(engine, store)

    # 1. geometry: two octahedral Cu per I4/mmm cell, in-plane a/2, apical as built; no row for Nb3Sn
    geometry = _geometry(engine)
    assert set(geometry) == {"Cu1La2O4-MP-mp-90000", "Cu1La2O4-MP-mp-90001", "Cu1La1.85Sr0.15O4-MP-mp-90002",
                             "Cu1La2O4-MP-mp-90003", "Cu1La2O4-MP-mp-90004", "Ba2Cu1Hg1O4-MP-mp-90010"}
    for k, (a, c) in enumerate(LA214):
        stem = "Cu1La1.85Sr0.15O4-MP-mp-90002" if k == 2 else f"Cu1La2O4-MP-mp-9000{k}"
        assert len(geometry[stem]) == 2
        for _, in_plane, apical, n_apical, snapshot, version in geometry[stem]:
            assert (in_plane, apical, n_apical) == (
                pytest.approx(a / 2, abs=1e-5), pytest.approx(law(a, c) + JITTER[k], abs=1e-5), 2)
            assert (snapshot, version) == (table_run.run_id, code_version())
    [(_, _, hg_apical, _, _, _)] = geometry["Ba2Cu1Hg1O4-MP-mp-90010"]
    assert hg_apical == pytest.approx(0.29 * 9.50, abs=1e-5)
    assert (summary.geometry.n_structures, summary.geometry.n_computed, summary.geometry.n_rows) == (6, 6, 11)

    # 2. calibrations: La214 recovers the law from 5 points; Hg1201 (1 point) is skipped and logged
    [la] = [r for r in summary.calibrations if r.family == "La214 (T)"]
    assert (la.status, la.version, la.n_points, la.n_structures) == ("created", 1, 5, 5)
    assert (la.calibration.alpha, la.calibration.beta) == pytest.approx((ALPHA, BETA), abs=5e-3)
    assert [la.calibration.predict(a, c) for a, c in LA214] == pytest.approx([law(a, c) for a, c in LA214], abs=2e-4)
    assert la.calibration.mae < 1e-4 and la.cv_mae is not None and la.cv_mae < 1e-3
    [hg] = [r for r in summary.calibrations if r.family == "Hg1201"]
    assert (hg.status, hg.calibration) == ("skipped", None)
    assert "1 distinct reference point" in hg.reason
    assert any("Hg1201 skipped" in m for m in caplog.messages)
    [stored] = _calibrations(engine)
    assert stored[:3] == ("La214 (T)", 1, 5) and stored[6] < 1e-4

    # 3. estimates: the table rows and the 3DSC row of the CIF with a Tc table, keyed by superconductor_id
    estimates = summary.estimates
    assert (estimates.name, estimates.version) == ("cuprate_distance_estimates", 1)
    assert estimates.parameters["skipped"] == {"no_calibration": 1, "not_tetragonal_or_orthorhombic": 1}
    rows = _estimates(engine, estimates)
    assert set(rows) == set(EXPECTED_ROWS) | {"cif_structures:Cu1La1.85Sr0.15O4-MP-mp-90002"}
    for record_id, (a, c, axis, multiple) in EXPECTED_ROWS.items():
        row = rows[record_id]
        assert (row["a"], row["c"], row["stacking_axis"], row["c_multiple"]) == (
            pytest.approx(a), pytest.approx(c), axis, multiple)
        assert row["in_plane_est"] == pytest.approx(a / 2)
        assert row["apical_est"] == pytest.approx(law(a, c), abs=1e-3)
        assert (row["family"], row["calibration_id"], row["calibration_version"]) == ("La214 (T)", la.calibration_id, 1)
    assert rows["cif_structures:Cu1La1.85Sr0.15O4-MP-mp-90002"]["apical_est"] == pytest.approx(law(*LA214[2]),
                                                                                               abs=1e-3)

    # nothing changed: no new geometry rows, the same calibration version, the same feature-set version
    again = cuprates.run_pipeline(engine, store)
    assert (again.geometry.n_up_to_date, again.geometry.n_rows) == (6, 0)
    assert [(r.family, r.status, r.version) for r in again.calibrations if r.family == "La214 (T)"] == [
        ("La214 (T)", "unchanged", 1)]
    assert again.estimates.version == 1

    # a sixth La214 structure: geometry only for it, calibration v2, estimates v2 that name it
    ingest(supercon, _inputs(tmp_path, [*LA214, EXTRA_LA214]), engine=engine)
    assert cuprates.compute_geometry(engine) == 2
    refit = {r.family: r for r in cuprates.fit_calibrations(engine)}
    assert (refit["La214 (T)"].status, refit["La214 (T)"].version, refit["La214 (T)"].n_points) == ("created", 2, 6)
    forced = {r.family: r for r in cuprates.fit_calibrations(engine, force=True)}
    assert forced["La214 (T)"].version == 3
    assert [r[:3] for r in _calibrations(engine)] == [("La214 (T)", 1, 5), ("La214 (T)", 2, 6), ("La214 (T)", 3, 6)]
    newer = cuprates.estimate_distances(engine, store)
    assert newer.version == 2
    assert {r["calibration_version"] for r in _estimates(engine, newer).values()} == {3}

    # a withdrawn structure leaves the reference set
    ingest(supercon, _inputs(tmp_path, LA214[:4]), engine=engine)
    [after] = [r for r in cuprates.fit_calibrations(engine) if r.family == "La214 (T)"]
    assert (after.status, after.version, after.n_points) == ("created", 4, 4)


def test_estimates_join_superconductors_current_in_duckdb(tmp_path, duckdb_url) -> None:
    engine = db.create_engine(duckdb_url)
    db.upgrade(engine)
    ingest(supercon, _inputs(tmp_path, LA214), engine=engine)
    ingest(supercon, [_write(tmp_path / "lattice.csv", LATTICE_TABLE)], engine=engine)
    summary = cuprates.run_pipeline(engine, FeatureStore(tmp_path / "features", engine))
    with engine.connect() as conn:
        joined = conn.execute(sa.text(
            "SELECT s.source_record_id, s.tc_kelvin, e.apical_est, e.in_plane_est, e.calibration_version "
            "FROM features_cuprate_distance_estimates e JOIN superconductors_current s USING (superconductor_id) "
            "ORDER BY s.source_record_id")).all()
    assert len(joined) == summary.estimates.row_count == 5
    by_record = {r[0]: r for r in joined}
    assert by_record["lattice_tc:La1.85Sr0.15CuO4"][1:4] == (
        38.0, pytest.approx(law(3.78, 13.23), abs=1e-3), pytest.approx(1.89))
    assert summary.lines()[0].startswith("geometry: 6 cuprate structures")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _estimates(engine, info) -> dict[str, dict]:
    """Estimate rows by record id: the Parquet parts of the registered version, joined to the records in SQL."""
    table = pq.read_table(info.paths[0])
    with engine.connect() as conn:
        records = dict(conn.execute(sa.text(
            "SELECT superconductor_id, source_record_id FROM superconductors_current")).all())
    return {records[r["superconductor_id"]]: r for r in table.to_pylist()}


def test_geometry_of_other_sources_and_families_from_record_extra(tmp_path, duckdb_url) -> None:
    """``source=None`` covers every source; records whose extra says ``other`` get no rows."""
    engine = db.create_engine(duckdb_url)
    db.upgrade(engine)
    nd = Structure.from_spacegroup("I4/mmm", Lattice.tetragonal(3.94, 12.15), ["Nd", "Cu", "O", "O"],
                                   [[0, 0, 0.3526], [0, 0, 0], [0, 0.5, 0], [0, 0.5, 0.25]])
    ingest(supercon, [_cif(tmp_path / "Cu1Nd2O4-MP-mp-90020.cif", nd),
                      _cif(tmp_path / "Cu1La2O4-MP-mp-90021.cif", la2cuo4(3.80, 13.20))], engine=engine)
    with engine.connect() as conn:
        extras = [json.loads(e) if isinstance(e, str) else e for e in conn.execute(sa.text(
            "SELECT extra FROM material_revision ORDER BY material_id")).scalars()]
    assert [e["cuprate_family"] for e in extras] == ["other", "La214 (T)"]  # T' Nd2CuO4 is not La214 (T)
    run = cuprates.geometry_run(engine, source=None)
    assert (run.n_structures, run.n_rows) == (1, 2)
    assert cuprates.compute_geometry(engine, source="icsd") == 0
