"""SuperCon: Stanev and 3DSC tables, lattice tables, variable stoichiometry, 3DSC/MP CIF archives and cuprate CIFs."""

from __future__ import annotations

import io
import itertools
import json
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from matlake import db
from matlake.errors import InputError
from matlake.featurestore.cuprate_geometry import cu_o_distances, summarise
from matlake.ingest import supercon
from matlake.ingest.cuprate_families import STUDIED_FAMILIES
from matlake.ingest.framework import ingest
from tests.conftest import shared_data

STANEV = """\
name,Tc
Ba0.4K0.6Fe2As2,31.2
La1.85Sr0.15CuO4,38.5
Nb3Sn,18.1
Nb3Sn,17.9
Sn1Nb3,18.0
YBa2Cu3O7,92
Cu1,0
La2-xSrxCuO4,30
YBa2Cu3O7-d,90
Sr2Cu1Cl1.2O4.,10
Hf1V2D0.5,5
Mo1,abc
Al1,-1
Pb1,inf
"""

THREEDSC = '''\
"# ""The 3DSC_ICSD without the ICSD data except for the ICSD ID.""",,,
formula_sc,tc,database_id_2,synth_doped
Ba2Cu3O6.93Y1,91.5,ICSD-65432,True
Ba2Cu3O6.93Y1,91.5,ICSD-65433,True
Al1Nb3,0.0,ICSD-1234,False
Cu1La1.85Sr0.15O4,37.0,ICSD-72040,True
As1F0.11Fe1La1Mn0O0.89,20.0,ICSD-9,True
Nb1,9.2,NOT-AN-ID,False
Nb1,9.2,ICSD-77,maybe
Ba2Cu3O6.93Y1,91.5,ICSD-65432,True
'''

LATTICE = """\
formula,Tc,a,b,c,spacegroup,x,d
La2-xSrxCuO4,38,3.78,3.78,13.23,I4/mmm,0.15,
YBa2Cu3O7-d,91,3.82,3.89,11.68,Pmmm,,0.07
La2-xSrxCuO4,0,3.79,3.79,13.15,I4/mmm,,
HgBa2CuO4,94,3.88,3.88,9.5,P4/mmm,,
MgB2,39,3.086,-3.086,3.52,P6/mmm,,
"""

MP_LATTICE_HEADER = ("formula_sc,mp_id,synth_doped,a,b,c,alpha,beta,gamma,volume,sg_cif,file,tc_from_3dsc_icsd,"
                     "tc_from_stanev,spacegroup,sg_number,a_conv,b_conv,c_conv,mp_reduced_formula\n")
MP_LATTICE = MP_LATTICE_HEADER + """\
Cu1La1.85Sr0.15O4,mp-19735,True,6.87,6.87,6.87,147.1,147.1,32.2,189.0,I4/mmm,\
Cu1La1.85Sr0.15O4-MP-mp-19735-synth_doped.cif,37.5,38.0,I4/mmm,139,3.80,3.80,13.20,La2CuO4
Cu1La2O4,mp-19735,False,6.87,6.87,6.87,147.1,147.1,32.2,189.0,I4/mmm,Cu1La2O4-MP-mp-19735.cif,,0.0,I4/mmm,139,\
3.80,3.80,13.20,La2CuO4
Mg1B2,mp-763,False,3.07,3.07,3.52,90,90,120,28.7,P6/mmm,Mg1B2-MP-mp-763.cif,39.0,,P6/mmm,191,3.07,3.07,3.52,MgB2
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def engine(duckdb_url):
    engine = db.create_engine(duckdb_url)
    db.upgrade(engine)
    return engine


def _rows(engine, dataset: str) -> dict[str, dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT m.source_record_id, r.formula_raw, r.extra AS record_extra, sc.tc_kelvin, sc.is_superconducting, "
            "sc.lattice_a_angstrom, sc.lattice_b_angstrom, sc.lattice_c_angstrom, sc.spacegroup, sc.cuprate_family, "
            "sc.n_cuo2_planes, sc.synth_doped, sc.icsd_id, sc.extra FROM material m "
            "JOIN material_revision r ON r.material_id = m.id AND r.dataset = :d "
            "LEFT JOIN superconductor sc ON sc.material_id = m.id AND sc.dataset = :d"), {"d": dataset}).mappings()
        return {r["source_record_id"]: {k: _json(v) for k, v in r.items()} for r in rows}


def _json(value):
    return json.loads(value) if isinstance(value, str) and value[:1] in "{[" else value


# ---- tables ------------------------------------------------------------------------------------------------------


def test_stanev_rows_ids_tc_zero_and_rejects(tmp_path, engine):
    [run] = ingest(supercon, [_write(tmp_path, "Supercon_data.csv", STANEV)], engine=engine)
    assert (run.dataset, run.n_read, run.n_inserted) == ("stanev_tc", 14, 7)
    assert run.rejects_by_reason == {"variable_stoichiometry": 2, "unparsable_formula": 1, "unknown_element": 1,
                                     "non_numeric_value": 1, "negative_tc": 1, "non_finite_value": 1}
    rows = _rows(engine, "stanev_tc")
    assert sorted(rows) == sorted(f"stanev_tc:{k}" for k in (
        "Ba0.4K0.6Fe2As2", "La1.85Sr0.15CuO4", "Nb3Sn", "Nb3Sn#2", "Sn1Nb3", "YBa2Cu3O7", "Cu1"))
    assert rows["stanev_tc:Nb3Sn#2"]["tc_kelvin"] == 17.9
    assert (rows["stanev_tc:Cu1"]["tc_kelvin"], rows["stanev_tc:Cu1"]["is_superconducting"]) == (0.0, False)
    lsco = rows["stanev_tc:La1.85Sr0.15CuO4"]
    assert (lsco["cuprate_family"], lsco["n_cuo2_planes"]) == ("La214 (T)", 1)
    assert lsco["extra"]["cuprate_family_reason"].startswith("La214 (T)")
    assert (rows["stanev_tc:YBa2Cu3O7"]["cuprate_family"], rows["stanev_tc:YBa2Cu3O7"]["n_cuo2_planes"]) == ("Y123", 2)
    assert rows["stanev_tc:Nb3Sn"]["cuprate_family"] == "other" and rows["stanev_tc:Nb3Sn"]["extra"] is None
    with engine.connect() as conn:
        reasons = dict(conn.execute(sa.text(
            "SELECT record_key, message FROM ingest_reject WHERE reason_code = 'variable_stoichiometry'")).all())
    assert "gives no value" in reasons["stanev_tc:La2-xSrxCuO4"]


def test_3dsc_rows_skip_the_comment_and_keep_icsd_ids(tmp_path, engine):
    [run] = ingest(supercon, [_write(tmp_path, "3DSC_ICSD_only_IDs.csv", THREEDSC)], engine=engine)
    assert (run.dataset, run.n_read, run.n_inserted) == ("3dsc_icsd_tc", 8, 5)
    assert run.rejects_by_reason == {"non_positive_amount": 1, "invalid_icsd_id": 1, "invalid_flag": 1}
    rows = _rows(engine, "3dsc_icsd_tc")
    ybco = rows["3dsc_icsd_tc:Ba2Cu3O6.93Y1@ICSD-65432"]
    assert (ybco["icsd_id"], ybco["synth_doped"], ybco["cuprate_family"], ybco["tc_kelvin"]) == (
        "ICSD-65432", True, "Y123", 91.5)
    assert "3dsc_icsd_tc:Ba2Cu3O6.93Y1@ICSD-65432#2" in rows  # a repeated row is kept under its occurrence
    assert rows["3dsc_icsd_tc:Al1Nb3@ICSD-1234"]["is_superconducting"] is False


def test_lattice_table_substitutes_given_variables(tmp_path, engine):
    [run] = ingest(supercon, [_write(tmp_path, "measured.csv", LATTICE)], engine=engine)
    assert (run.dataset, run.n_read, run.n_inserted) == ("lattice_tc", 5, 3)
    assert run.rejects_by_reason == {"variable_stoichiometry": 1, "non_positive_lattice": 1}
    rows = _rows(engine, "lattice_tc")
    lsco = rows["lattice_tc:La2-xSrxCuO4"]
    assert lsco["formula_raw"] == "La1.85Sr0.15CuO4"
    assert lsco["record_extra"] == {"formula_as_written": "La2-xSrxCuO4", "variables": {"x": 0.15}}
    assert (lsco["lattice_a_angstrom"], lsco["lattice_c_angstrom"], lsco["spacegroup"]) == (3.78, 13.23, "I4/mmm")
    assert (lsco["cuprate_family"], lsco["n_cuo2_planes"]) == ("La214 (T)", 1)
    assert rows["lattice_tc:YBa2Cu3O7-d"]["formula_raw"] == "YBa2Cu3O6.93"
    assert rows["lattice_tc:HgBa2CuO4"]["cuprate_family"] == "Hg1201"


def test_3dsc_mp_lattice_table_uses_conventional_cell_and_3dsc_tc(tmp_path, engine):
    [run] = ingest(supercon, [_write(tmp_path, "3dsc_mp_lattice_tc_derived.csv", MP_LATTICE)], engine=engine)
    assert (run.dataset, run.n_inserted) == ("3dsc_mp_lattice", 3)
    rows = _rows(engine, "3dsc_mp_lattice")
    doped = rows["3dsc_mp_lattice:Cu1La1.85Sr0.15O4-MP-mp-19735-synth_doped"]
    assert (doped["tc_kelvin"], doped["lattice_a_angstrom"], doped["lattice_c_angstrom"]) == (37.5, 3.80, 13.20)
    assert doped["extra"]["tc_sources"] == {"tc_from_3dsc_icsd": 37.5, "tc_from_stanev": 38.0}
    assert doped["extra"]["mp_id"] == "mp-19735" and doped["synth_doped"] is True
    assert rows["3dsc_mp_lattice:Cu1La2O4-MP-mp-19735"]["tc_kelvin"] == 0.0  # falls back to Stanev's value


@pytest.mark.parametrize(
    ("header", "dataset"),
    [("name,Tc", "stanev_tc"), ("formula_sc,tc,database_id_2,synth_doped", "3dsc_icsd_tc"),
     ("formula,tc,a,b,c", "lattice_tc"), ("Formula,TC,A_conv,b_conv,c_conv,mp_id", "3dsc_mp_lattice"),
     ('"# comment",,\nname,Tc', "stanev_tc")],
)
def test_dataset_from_header(tmp_path, header, dataset):
    assert supercon.dataset(_write(tmp_path, "t.csv", header + "\n")) == dataset


def test_unknown_csv_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not a SuperCon file"):
        supercon.dataset(_write(tmp_path, "t.csv", "id,energy\n1,2\n"))


@pytest.mark.parametrize(
    ("formula", "values", "expected"),
    [("La2-xSrxCuO4", {"x": 0.15}, "La1.85Sr0.15CuO4"), ("YBa2Cu3O7-d", {"d": 0.05}, "YBa2Cu3O6.95"),
     ("YBa2Cu3O7-δ", {"d": 0.1}, "YBa2Cu3O6.9"), ("La2-xSrxCuO4", {"x": 0}, "La2CuO4"),
     ("Bi2Sr2Ca1-xYxCu2O8+d", {"x": 0.2, "d": 0.1}, "Bi2Sr2Ca0.8Y0.2Cu2O8.1"),
     ("Nd2-xCexCuO4", {"x": 0.15}, "Nd1.85Ce0.15CuO4"), ("(La1-xSrx)2CuO4", {"x": 0.1}, "(La0.9Sr0.1)2CuO4"),
     ("Ba1-xKxFe2As2", {"x": 0.4}, "Ba0.6K0.4Fe2As2"), ("CdSe1-yTey", {"y": 0.5}, "CdSe0.5Te0.5"),
     ("Sr2CuO3+2x", {"x": 0.05}, "Sr2CuO3.1"), ("La2-x-ySrxCayCuO4", {"x": 0.1}, "La1.9-ySr0.1CayCuO4"),
     ("Ca0.3-0.1-0.2xSrx", {"x": 1}, "Sr"), ("YBa2Cu3O7-d", {"x": 0.1}, "YBa2Cu3O7-d")],
)
def test_substitute_variables(formula, values, expected):
    assert supercon.substitute_variables(formula, values) == expected


def test_variables_column(tmp_path, engine):
    path = _write(tmp_path, "v.csv", 'formula,tc,a,b,c,variables\nLa2-xSrxCuO4,30,3.8,3.8,13.2,"x=0.1; d=0"\n'
                                     "La2-xSrxCuO4,30,3.8,3.8,13.2,x:0.1\n")
    [run] = ingest(supercon, [path], engine=engine)
    assert run.n_inserted == 1 and run.rejects_by_reason == {"invalid_variables": 1}


# ---- CIF archives ------------------------------------------------------------------------------------------------


def _la2cuo4(doped: bool) -> Structure:
    la = {"La": 0.925, "Sr": 0.075} if doped else "La"
    return Structure.from_spacegroup("I4/mmm", Lattice.tetragonal(3.80, 13.20), [la, "Cu", "O", "O"],
                                     [[0, 0, 0.3607], [0, 0, 0], [0, 0.5, 0], [0, 0, 0.1828]])


def _mp_archive(path: Path) -> Path:
    """A 3DSC-style archive: pymatgen-written CIFs named <SuperCon formula>-MP-<mp-id>[-synth_doped].cif."""
    members = {
        "3DSC_MP_cifs/Cu1La1.85Sr0.15O4-MP-mp-19735-synth_doped.cif": str(CifWriter(_la2cuo4(True))),
        "3DSC_MP_cifs/Cu1La2O4-MP-mp-19735.cif": str(CifWriter(_la2cuo4(False))),
        "3DSC_MP_cifs/Nb3Sn1-MP-mp-1234.cif": str(CifWriter(Structure.from_spacegroup(
            "Pm-3n", Lattice.cubic(5.29), ["Nb", "Sn"], [[0.25, 0, 0.5], [0, 0, 0]]))),
        "3DSC_MP_cifs/Broken-MP-mp-9.cif": "data_broken\n_cell_length_a 3\n;\nunterminated",
    }
    with tarfile.open(path, "w:xz") as archive:
        for name, text in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            archive.addfile(info, io.BytesIO(text.encode()))
    return path


def test_3dsc_archive_joins_tc_from_the_table_beside_it(tmp_path, engine):
    archive = _mp_archive(tmp_path / "3dsc_mp_cifs.tar.xz")
    _write(tmp_path, "3dsc_mp_lattice_tc_derived.csv", MP_LATTICE)
    [run] = ingest(supercon, [archive], engine=engine)
    assert (run.dataset, run.n_read, run.n_inserted) == ("3dsc_mp_structures", 4, 3)
    assert run.rejects_by_reason == {"malformed_cif": 1}
    rows = _rows(engine, "3dsc_mp_structures")
    doped = rows["3dsc_mp_structures:Cu1La1.85Sr0.15O4-MP-mp-19735-synth_doped"]
    assert doped["formula_raw"] == "Cu1La1.85Sr0.15O4"
    assert (doped["tc_kelvin"], doped["synth_doped"], doped["cuprate_family"], doped["n_cuo2_planes"]) == (
        37.5, True, "La214 (T)", 1)
    assert doped["extra"]["tc_from"] == "3dsc_mp_lattice_tc_derived.csv"
    assert doped["record_extra"] == {"mp_id": "mp-19735", "synth_doped": True}
    nb3sn = rows["3dsc_mp_structures:Nb3Sn1-MP-mp-1234"]  # not in the table: no Tc row, family in extra
    assert nb3sn["tc_kelvin"] is None
    assert nb3sn["record_extra"] == {"mp_id": "mp-1234", "synth_doped": False, "cuprate_family": "other"}
    with engine.connect() as conn:
        structures = dict(conn.execute(sa.text(
            "SELECT m.source_record_id, s.is_ordered FROM structure s JOIN material m ON m.id = s.material_id")).all())
        calc = conn.execute(sa.text("SELECT DISTINCT calculation_id, kind FROM structure ORDER BY 1")).all()
    assert structures["3dsc_mp_structures:Cu1La1.85Sr0.15O4-MP-mp-19735-synth_doped"] is False
    assert structures["3dsc_mp_structures:Cu1La2O4-MP-mp-19735"] is True
    assert [tuple(c) for c in calc] == [("mp-1234", "relaxed"), ("mp-19735", "relaxed")]


def test_archive_without_a_table_has_no_tc(tmp_path, engine):
    [run] = ingest(supercon, [_mp_archive(tmp_path / "3dsc_mp_cifs.tar.xz")], engine=engine)
    assert run.n_inserted == 3
    rows = _rows(engine, "3dsc_mp_structures")
    assert all(r["tc_kelvin"] is None and "cuprate_family" in r["record_extra"] for r in rows.values())


# ---- real data ---------------------------------------------------------------------------------------------------

CUPRATE_FAMILIES = {
    "Ba2Ca2Cu3Tl2O10-MP-mp-653154": ("other", None),  # Tl2223: outside the 16 studied families
    "Ba2Cu1Tl1O5-MP-mp-20942": ("Tl1201", 1),
    "Bi2Ca1Cu2Sr2O8-MP-mp-555855": ("Bi2212", 2),
    "Cu1La2O4-MP-mp-19735": ("La214 (T)", 1),
    "Cu1La2O4-MP-mp-36480": ("La214 (T)", 1),
    "mp-20674": ("Y123", 2),
    "mp-22215": ("Y123", 2),
    "mp-6562": ("Hg1201", 1),
    "mp-6879": ("Hg1212", 2),
}
CU_O_DISTANCES = {  # in-plane, apical (A)
    "mp-20674": (1.95, 2.30),  # YBa2Cu3O7
    "Cu1La2O4-MP-mp-19735": (1.91, 2.46),  # La2CuO4, I4/mmm
    "Bi2Ca1Cu2Sr2O8-MP-mp-555855": (1.88, 2.71),  # Bi2212
    "mp-6562": (1.97, 2.90),  # Hg1201
}


@pytest.mark.shared_data
def test_cuprate_cifs_families_and_cu_o_distances_of_the_stored_structures(engine):
    folder = shared_data("cuprates")
    [run] = ingest(supercon, sorted(folder.glob("*.cif")), engine=engine)
    assert (run.dataset, run.n_read, run.n_inserted) == ("cif_structures", 9, 9)
    rows = _rows(engine, "cif_structures")
    found = {k.split(":", 1)[1]: (r["record_extra"]["cuprate_family"], r["record_extra"].get("n_cuo2_planes"))
             for k, r in rows.items()}
    assert found == CUPRATE_FAMILIES
    assert all(r["record_extra"]["mp_id"].startswith("mp-") for r in rows.values())
    with engine.connect() as conn:
        stored = conn.execute(sa.text(
            "SELECT m.source_record_id, s.lattice, s.species, s.frac_coords FROM structure s "
            "JOIN material m ON m.id = s.material_id")).all()
    for record_id, lattice, species, coords in stored:
        key = record_id.split(":", 1)[1]
        if key in CU_O_DISTANCES:
            structure = Structure(_json(lattice), _json(species), _json(coords))
            in_plane, apical = summarise(cu_o_distances(structure))
            assert (in_plane, apical) == pytest.approx(CU_O_DISTANCES[key], abs=0.03), key


@pytest.mark.shared_data
def test_stanev_sample_and_cuprate_lattice_sample(engine):
    [stanev] = ingest(supercon, [shared_data("samples/stanev_supercon_400.csv")], engine=engine)
    assert stanev.n_read == 395 and stanev.n_read == stanev.n_accepted + stanev.n_rejected
    assert stanev.n_rejected <= 5
    [lattice] = ingest(supercon, [shared_data("samples/3dsc_mp_cuprates_lattice_tc_150.csv")], engine=engine)
    assert (lattice.dataset, lattice.n_read, lattice.n_rejected) == ("3dsc_mp_lattice", 150, 0)
    with engine.connect() as conn:
        families = Counter(dict(conn.execute(sa.text(
            "SELECT cuprate_family, count(*) FROM superconductor WHERE dataset = '3dsc_mp_lattice' GROUP BY 1")).all()))
    assert (families["La214 (T)"], families["Y123"], families["RE123"], families["Bi2212"]) == (7, 9, 14, 7)
    assert set(families) <= {*STUDIED_FAMILIES, "other"}


@pytest.mark.shared_data
def test_first_members_of_the_3dsc_archive_get_tc_from_the_table_beside_it():
    archive = shared_data("supercon/3dsc_mp_cifs.tar.xz")
    records = [supercon.normalise(raw) for raw in itertools.islice(supercon.read(archive), 25)]
    assert all(r.record_id.startswith("3dsc_mp_structures:") and r.extra["mp_id"][:3] in ("mp-", "mvc")
               for r in records)
    assert all(len(r.superconductors) == 1 and r.superconductors[0].tc_kelvin >= 0 for r in records)
    assert all(r.structures[0].calculation_id == r.extra["mp_id"] for r in records)


@pytest.mark.shared_data
def test_whole_stanev_csv(engine):
    [run] = ingest(supercon, [shared_data("supercon/Supercon_data.csv")], engine=engine)
    assert (run.n_read, run.n_inserted) == (16414, 16365)
    assert run.rejects_by_reason == {"unknown_element": 31, "non_positive_amount": 9, "unparsable_formula": 7,
                                     "variable_stoichiometry": 2}
    with engine.connect() as conn:
        zero = conn.execute(sa.text("SELECT count(*) FROM superconductor WHERE NOT is_superconducting")).scalar()
        y123 = conn.execute(sa.text("SELECT count(*) FROM superconductor WHERE cuprate_family = 'Y123'")).scalar()
    assert zero == 3953 and y123 == 921


@pytest.mark.shared_data
@pytest.mark.slow
def test_whole_3dsc_csv(engine):
    [run] = ingest(supercon, [shared_data("supercon/3DSC_ICSD_only_IDs.csv")], engine=engine)
    assert (run.n_read, run.n_inserted, run.rejects_by_reason) == (86490, 86479, {"non_positive_amount": 11})
    with engine.connect() as conn:
        icsd = conn.execute(sa.text("SELECT count(DISTINCT icsd_id) FROM superconductor")).scalar()
    assert icsd == 9950
