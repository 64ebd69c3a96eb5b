"""ICSD exports: the CIF dialect (uncertainties, disorder, Cu2+, metadata), archives, hostile tars, malformed CIFs.

All CIFs here are hand-written in the ICSD export style; no ICSD file is (or may be) part of the project.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from pymatgen.core import Structure

from matlake import db
from matlake.featurestore.cuprate_geometry import cu_o_distances, summarise
from matlake.ingest import cif, icsd
from matlake.ingest.framework import ingest

LSCO_NEUTRON = """\
data_72040-ICSD
_database_code_ICSD 72040
_audit_creation_date 1993/08/22
_chemical_name_systematic
'Lanthanum strontium copper oxide (1.85/0.15/1/4)'
_chemical_formula_structural
'(La1.85 Sr0.15) Cu O4'
_chemical_formula_sum
'Cu1 La1.85 O4 Sr0.15'
_chemical_name_structure_type K2NiF4
_exptl_crystal_density_diffrn 6.95
_cell_measurement_temperature 10.
_publ_section_title
;
Structure of the superconductor La1.85 Sr0.15 Cu O4 at 10 K
;
loop_
_citation_id
_citation_journal_full
_citation_year
_citation_journal_volume
_citation_page_first
_citation_page_last
_citation_journal_id_ASTM
primary 'Physical Review, Serie 3. B - Condensed Matter' 1987 35 8814 8817 PRBMDO
loop_
_publ_author_name
'Jorgensen, J.D.'
'Schuettler, H.B.'
_cell_length_a 3.7793(1)
_cell_length_b 3.7793(1)
_cell_length_c 13.2260(4)
_cell_angle_alpha 90.
_cell_angle_beta 90.
_cell_angle_gamma 90.
_cell_volume 188.91
_cell_formula_units_Z 2
_symmetry_space_group_name_H-M 'I 4/m m m'
_symmetry_Int_Tables_number 139
_refine_ls_R_factor_all 0.041
_diffrn_radiation_probe neutron
loop_
_symmetry_equiv_pos_site_id
_symmetry_equiv_pos_as_xyz
1 'x, y, z'
2 '-x, -y, -z'
3 '-y, x, z'
4 'y, -x, -z'
5 '-x, -y, z'
6 'x, y, -z'
7 'y, -x, z'
8 '-y, x, -z'
9 'x, -y, -z'
10 '-x, y, z'
11 '-y, -x, -z'
12 'y, x, z'
13 '-x, y, -z'
14 'x, -y, z'
15 'y, x, -z'
16 '-y, -x, z'
17 'x+1/2, y+1/2, z+1/2'
18 '-x+1/2, -y+1/2, -z+1/2'
19 '-y+1/2, x+1/2, z+1/2'
20 'y+1/2, -x+1/2, -z+1/2'
21 '-x+1/2, -y+1/2, z+1/2'
22 'x+1/2, y+1/2, -z+1/2'
23 'y+1/2, -x+1/2, z+1/2'
24 '-y+1/2, x+1/2, -z+1/2'
25 'x+1/2, -y+1/2, -z+1/2'
26 '-x+1/2, y+1/2, z+1/2'
27 '-y+1/2, -x+1/2, -z+1/2'
28 'y+1/2, x+1/2, z+1/2'
29 '-x+1/2, y+1/2, -z+1/2'
30 'x+1/2, -y+1/2, z+1/2'
31 'y+1/2, x+1/2, -z+1/2'
32 '-y+1/2, -x+1/2, z+1/2'
loop_
_atom_type_symbol
_atom_type_oxidation_number
La3+ 3
Sr2+ 2
Cu2.15+ 2.15
O2- -2
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_symmetry_multiplicity
_atom_site_Wyckoff_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_B_iso_or_equiv
_atom_site_occupancy
_atom_site_attached_hydrogens
La1 La3+ 4 e 0 0 0.36063(6) 0.42(2) 0.925 0
Sr1 Sr2+ 4 e 0 0 0.36063(6) 0.42(2) 0.075 0
Cu1 Cu2.15+ 2 a 0 0 0 0.31(3) 1. 0
O1 O2- 4 c 0 0.5 0 0.57(3) 1. 0
O2 O2- 4 e 0 0 0.1828(1) 1.1(1) 1. 0
#End of data_72040-ICSD
"""

# X-ray, Cu2+ written only in the type symbols (no _atom_type loop), a partly empty chain-oxygen site.
YBCO_XRAY = """\
data_65432-ICSD
_database_code_ICSD 65432
_chemical_name_systematic 'Yttrium dibarium tricopper oxide (1/2/3/6.9)'
_chemical_formula_sum 'Ba2 Cu3 O6.9 Y1'
_chemical_name_structure_type YBa2Cu3O7
_diffrn_ambient_temperature 293(2)
_diffrn_radiation_type 'Cu K\\a'
_refine_ls_R_factor_gt 0.0312
_refine_ls_wR_factor_ref 0.0405
_journal_name_full 'Zeitschrift fuer Kristallographie'
_journal_year 1988
_journal_volume 182
_journal_page_first 101
_cell_length_a 3.8227(3)
_cell_length_b 3.8872(3)
_cell_length_c 11.6802(9)
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P m m m'
_symmetry_Int_Tables_number 47
loop_
_symmetry_equiv_pos_site_id
_symmetry_equiv_pos_as_xyz
1 'x, y, z'
2 '-x, -y, z'
3 '-x, y, -z'
4 'x, -y, -z'
5 '-x, -y, -z'
6 'x, y, -z'
7 'x, -y, z'
8 '-x, y, z'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Y1 Y3+ 0.5 0.5 0.5 1.
Ba1 Ba2+ 0.5 0.5 0.1843(1) 1.
Cu1 Cu2+ 0 0 0 1.
Cu2 Cu2+ 0 0 0.3556(2) 1.
O1 O2- 0 0 0.1584(9) 1.
O2 O2- 0.5 0 0.3779(8) 1.
O3 O2- 0 0.5 0.3776(8) 1.
O4 O2- 0 0.5 0 0.9
"""

# Nothing says how it was measured; a second block in the same file.
UNKNOWN_METHOD = """\
data_1001-ICSD
_database_code_ICSD 1001
_chemical_formula_sum 'Cl1 Na1'
_cell_length_a 5.6402(1)
_cell_length_b 5.6402(1)
_cell_length_c 5.6402(1)
_cell_angle_alpha 90.
_cell_angle_beta 90.
_cell_angle_gamma 90.
_symmetry_space_group_name_H-M 'F m -3 m'
_symmetry_Int_Tables_number 225
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Na1 Na1+ 0 0 0 1.
Cl1 Cl1- 0.5 0.5 0.5 1.
data_1002-ICSD
_database_code_ICSD 1002
_chemical_formula_sum 'O1 Mg1'
_publ_section_comment 'Neutron powder diffraction at 4.2 K'
_cell_length_a 4.211
_cell_length_b 4.211
_cell_length_c 4.211
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'F m -3 m'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Mg1 Mg2+ 0 0 0
O1 O2- 0.5 0.5 0.5
"""

UNTERMINATED_TEXT = "data_9-ICSD\n_database_code_ICSD 9\n_publ_section_title\n;\nnever closed\n"
NO_SITES = "data_10-ICSD\n_database_code_ICSD 10\n_cell_length_a 4\n_cell_length_b 4\n_cell_length_c 4\n"
RAGGED_LOOP = UNKNOWN_METHOD.split("data_1002-ICSD")[0].replace("Cl1 Cl1- 0.5 0.5 0.5 1.", "Cl1 Cl1- 0.5 0.5")
OVER_OCCUPIED = UNKNOWN_METHOD.split("data_1002-ICSD")[0].replace("data_1001", "data_1003").replace(
    "_database_code_ICSD 1001", "_database_code_ICSD 1003").replace("Na1 Na1+ 0 0 0 1.", "Na1 Na1+ 0 0 0 1.3")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _parsed(text: str, name: str = "x.cif") -> list:
    return cif.parse_text(cif.CifText(name, text), "experimental")


@pytest.fixture
def engine(duckdb_url):
    engine = db.create_engine(duckdb_url)
    db.upgrade(engine)
    return engine


# ---- the dialect -------------------------------------------------------------------------------------------------


def test_disordered_neutron_structure_keeps_occupancies_oxidation_states_and_metadata():
    [parsed] = _parsed(LSCO_NEUTRON)
    st = parsed.structure
    assert not st.is_ordered and st.spacegroup_number == 139 and st.n_sites == 14
    assert {"La": 0.925, "Sr": 0.075} in st.species
    assert st.site_properties["oxidation_states"][st.species.index({"Cu": 1.0})] == {"Cu": 2.15}
    meta = st.extra
    assert meta["icsd_code"] == 72040 and meta["structure_type"] == "K2NiF4"
    assert meta["diffraction_method"] == "neutron"
    assert meta["diffraction_method_evidence"] == "diffrn_radiation_probe: neutron"
    assert meta["measurement_temperature_k"] == 10.0
    assert meta["r_factors"] == {"refine_ls_r_factor_all": 0.041}
    assert meta["cell_su"] == {"a": 0.0001, "b": 0.0001, "c": 0.0004}
    assert meta["citations"][0]["journal_volume"] == "35" and meta["citations"][0]["year"] == 1987
    assert meta["authors"] == ["Jorgensen, J.D.", "Schuettler, H.B."]
    assert meta["oxidation_numbers"]["Cu2.15+"] == 2.15
    assert meta["title"] == "Structure of the superconductor La1.85 Sr0.15 Cu O4 at 10 K"


def test_xray_structure_with_charges_only_in_type_symbols_and_a_vacancy():
    [parsed] = _parsed(YBCO_XRAY)
    st = parsed.structure
    assert not st.is_ordered  # the chain oxygen site is 90 % occupied
    assert {"O": 0.9} in st.species
    oxidation = {el: v for site in st.site_properties["oxidation_states"] for el, v in site.items()}
    assert oxidation == {"Y": 3, "Ba": 2, "Cu": 2, "O": -2}
    meta = st.extra
    assert meta["diffraction_method"] == "x-ray"
    assert meta["diffraction_method_evidence"].startswith("diffrn_radiation_type")
    assert meta["ambient_temperature_k"] == 293.0
    assert meta["r_factors"] == {"refine_ls_r_factor_gt": 0.0312, "refine_ls_wr_factor_ref": 0.0405}
    assert meta["citations"] == [{"name_full": "Zeitschrift fuer Kristallographie", "year": "1988",
                                  "volume": "182", "page_first": "101"}]


def test_multi_block_file_and_methods_from_remarks_or_nothing():
    first, second = _parsed(UNKNOWN_METHOD)
    assert (first.block_name, second.block_name, first.n_blocks) == ("1001-ICSD", "1002-ICSD", 2)
    assert first.metadata["diffraction_method"] == "unknown" and "diffraction_method_evidence" not in first.metadata
    assert second.metadata["diffraction_method"] == "neutron"
    assert second.metadata["diffraction_method_evidence"].startswith("publ_section_comment")


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ("_diffrn_radiation_type 'Mo K\\a'", "x-ray"),
        ("_diffrn_radiation_type MoKa", "x-ray"),
        ("_diffrn_radiation_probe x-ray", "x-ray"),
        ("_diffrn_source 'nuclear reactor'", "neutron"),
        ("_diffrn_radiation_type synchrotron", "x-ray"),
        ("_chemical_name_common 'neutron diffraction study'", "neutron"),
        ("_publ_section_comment 'X-ray and neutron data refined together'", "unknown"),
        ("_publ_section_comment 'Cell measured in K. at 300 K'", "unknown"),
        ("_diffrn_radiation_probe neutron\n_publ_section_comment 'X-ray photographs'", "neutron"),
        ("_diffrn_radiation_probe electron", "electron"),
        ("", "unknown"),
    ],
)
def test_diffraction_method_inference(tags, expected):
    [data] = cif.read_cif(f"data_t\n{tags}\n")
    assert cif.diffraction_method(data)[0] == expected


@pytest.mark.parametrize(
    ("text", "value", "su"),
    [("0.3570(6)", 0.357, 0.0006), ("13.2260(4)", 13.226, 0.0004), ("90.", 90.0, None), ("293(2)", 293.0, 2.0),
     ("-0.5", -0.5, None), (".25", 0.25, None), ("1.2e-3(4)", 0.0012, 0.0004)],
)
def test_numbers_with_standard_uncertainties(text, value, su):
    assert cif.parse_number(text) == pytest.approx((value, su)) if su else cif.parse_number(text) == (value, None)


@pytest.mark.parametrize("text", ["?", ".", "abc", "", "1.2.3"])
def test_non_numbers(text):
    assert cif.parse_number(text) is None


def test_tokenizer_reads_quotes_text_fields_loops_and_comments():
    [data] = cif.read_cif(
        "# comment\ndata_q\n_a 'it''s here'\n_b \"two words\" # trailing\n_c\n;\nline one\nline two\n;\n"
        "loop_\n_x\n_y\n1 ?\n'a b' .\n_d O'Keefe\n"
    )
    assert data.items == {"_a": "it''s here", "_b": "two words", "_c": "line one\nline two", "_x": ["1", "a b"],
                          "_y": [None, None], "_d": "O'Keefe"}


# ---- malformed input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [(UNTERMINATED_TEXT, "malformed_cif"), (NO_SITES, "no_structure"), (RAGGED_LOOP, "malformed_cif"),
     (OVER_OCCUPIED, "invalid_occupancy"), ("just some text\n", "malformed_cif"),
     ("data_a\n_cell_length_a\n", "malformed_cif")],
)
def test_malformed_cifs_become_problems_not_exceptions(text, code):
    [problem] = _parsed(text, "bad.cif")
    assert isinstance(problem, cif.CifProblem) and problem.reason_code == code
    assert "bad.cif" in problem.message


# ---- archives ----------------------------------------------------------------------------------------------------


def _add(archive: tarfile.TarFile, name: str, data: bytes = b"", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    archive.addfile(info, io.BytesIO(data) if data else None)


def _malicious_tar(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        _add(archive, "export/", type=tarfile.DIRTYPE)
        _add(archive, "export/72040.cif", LSCO_NEUTRON.encode())
        _add(archive, "../evil.cif", YBCO_XRAY.encode())
        _add(archive, "/abs/absolute.cif", YBCO_XRAY.encode())
        _add(archive, "export/link.cif", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        _add(archive, "export/hard.cif", type=tarfile.LNKTYPE, linkname="export/72040.cif")
        _add(archive, "export/tty.cif", type=tarfile.CHRTYPE, devmajor=4, devminor=1)
        _add(archive, "export/README.txt", b"not a CIF, ignored")
        _add(archive, "export/latin1.cif", "data_x\n_publ_author_name 'M\xfcller'\n".encode("latin-1"))
        _add(archive, "export/65432.cif", YBCO_XRAY.encode())
    return path


def test_malicious_archive_members_are_rejected_and_nothing_touches_disk(tmp_path, engine, monkeypatch):
    monkeypatch.chdir(tmp_path)
    archive = _malicious_tar(tmp_path / "export.tar.gz")
    [run] = ingest(icsd, [archive], engine=engine)
    assert (run.n_read, run.n_inserted) == (8, 2)
    assert run.rejects_by_reason == {"unsafe_archive_member": 5, "undecodable_text": 1}
    with engine.connect() as conn:
        rejects = dict(conn.execute(sa.text("SELECT record_key, message FROM ingest_reject")).tuples().all())
    assert "'..' path component" in rejects["evil"] and "symbolic link" in rejects["link"]
    assert "hard link" in rejects["hard"] and "device" in rejects["tty"]
    assert "absolute path" in rejects["absolute"]
    assert not (tmp_path.parent / "evil.cif").exists() and not Path("/abs/absolute.cif").exists()
    assert not list(tmp_path.rglob("*.cif"))


def test_compressed_members_oversized_members_and_bombs(tmp_path, engine, monkeypatch):
    monkeypatch.setattr(cif, "MAX_CIF_BYTES", len(LSCO_NEUTRON) + 10)
    archive = tmp_path / "export.tar"
    with tarfile.open(archive, "w") as tar:
        _add(tar, "72040.cif.gz", gzip.compress(LSCO_NEUTRON.encode()))
        _add(tar, "broken.cif.xz", b"\xfd7zXZ\x00 not really xz")
        _add(tar, "big.cif", LSCO_NEUTRON.encode() * 2)
        _add(tar, "bomb.cif.gz", gzip.compress(b"#" * 10_000_000))
    [run] = ingest(icsd, [archive], engine=engine)
    assert run.n_inserted == 1
    assert run.rejects_by_reason == {"corrupt_archive_member": 1, "cif_too_large": 2}


def test_folders_expand_to_their_cif_files_and_archives(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.cif", "sub/a.cif.gz", "export.tar.gz", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert cif.expand_paths([tmp_path, tmp_path / "notes.txt"]) == [
        tmp_path / "b.cif", tmp_path / "export.tar.gz", tmp_path / "sub" / "a.cif.gz", tmp_path / "notes.txt"]


def test_unsafe_member_reasons():
    def member(name, **attrs):
        info = tarfile.TarInfo(name)
        for key, value in attrs.items():
            setattr(info, key, value)
        return info

    assert cif.unsafe_member_reason(member("a/b.cif")) is None
    assert "absolute" in cif.unsafe_member_reason(member("/b.cif"))
    assert "'..'" in cif.unsafe_member_reason(member("a/../../b.cif"))
    assert "'..'" in cif.unsafe_member_reason(member("a\\..\\b.cif"))
    assert "symbolic link" in cif.unsafe_member_reason(member("s.cif", type=tarfile.SYMTYPE, linkname="b.cif"))
    assert "FIFO" in cif.unsafe_member_reason(member("f.cif", type=tarfile.FIFOTYPE))


def test_truncated_archive_is_an_unreadable_file_after_the_members_read(tmp_path, engine):
    whole = tmp_path / "whole.tar"
    with tarfile.open(whole, "w") as archive:
        _add(archive, "a.cif", LSCO_NEUTRON.encode())
        _add(archive, "b.cif", YBCO_XRAY.encode() * 3)
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(whole.read_bytes()[:3000])
    [run] = ingest(icsd, [truncated], engine=engine)
    assert run.n_inserted == 1 and run.rejects_by_reason == {"unreadable_file": 1}


# ---- through the framework ---------------------------------------------------------------------------------------


def test_ingest_files_on_duckdb_and_postgres(any_url, tmp_path):
    engine = db.create_engine(any_url)
    db.upgrade(engine)
    files = [_write(tmp_path, "lsco.cif", LSCO_NEUTRON), _write(tmp_path, "ybco.cif", YBCO_XRAY),
             _write(tmp_path, "two.cif", UNKNOWN_METHOD), _write(tmp_path, "bad.cif", UNTERMINATED_TEXT),
             _write(tmp_path, "over.cif", OVER_OCCUPIED)]
    [run] = ingest(icsd, files, engine=engine)
    assert (run.dataset, run.n_read, run.n_inserted) == ("icsd_structures", 6, 4)
    assert run.rejects_by_reason == {"malformed_cif": 1, "invalid_occupancy": 1}
    with engine.connect() as conn:
        rows = {r.source_record_id: r for r in conn.execute(sa.text(
            "SELECT m.source_record_id, r.formula_raw, r.extra AS rextra, s.is_ordered, s.extra, s.lattice, s.species,"
            " s.frac_coords, s.kind FROM material m JOIN material_revision r ON r.material_id = m.id "
            "JOIN structure s ON s.material_id = m.id"))}
        bad = conn.execute(sa.text("SELECT record_key, message, raw_excerpt FROM ingest_reject "
                                   "WHERE reason_code = 'malformed_cif'")).one()
    assert sorted(rows) == ["ICSD-1001", "ICSD-1002", "ICSD-65432", "ICSD-72040"]
    lsco = rows["ICSD-72040"]
    extra = json.loads(lsco.extra) if isinstance(lsco.extra, str) else lsco.extra
    rextra = json.loads(lsco.rextra) if isinstance(lsco.rextra, str) else lsco.rextra
    assert lsco.formula_raw == "Cu1 La1.85 O4 Sr0.15" and lsco.kind == "experimental" and lsco.is_ordered is False
    assert extra["diffraction_method"] == "neutron" and extra["structure_type"] == "K2NiF4"
    assert rextra == {"icsd_id": "ICSD-72040", "cuprate_family": "La214 (T)", "n_cuo2_planes": 1,
                      "diffraction_method": "neutron"}
    assert "never closed" in bad.message and bad.raw_excerpt.startswith("data_9-ICSD")
    structure = Structure(*(json.loads(getattr(lsco, k)) if isinstance(getattr(lsco, k), str) else getattr(lsco, k)
                            for k in ("lattice", "species", "frac_coords")))
    in_plane, apical = summarise(cu_o_distances(structure))
    assert in_plane == pytest.approx(3.7793 / 2, abs=1e-4) and apical == pytest.approx(0.1828 * 13.226, abs=1e-3)


def test_reingest_is_unchanged(tmp_path, engine):
    path = _write(tmp_path, "ybco.cif", YBCO_XRAY)
    ingest(icsd, [path], engine=engine)
    [again] = ingest(icsd, [path], engine=engine)
    assert (again.n_unchanged, again.n_inserted, again.n_updated) == (1, 0, 0)


def test_dask_parsing_gives_the_same_records(tmp_path):
    distributed = pytest.importorskip("distributed")
    archive = _malicious_tar(tmp_path / "export.tar.gz")
    files = [archive, _write(tmp_path, "two.cif", UNKNOWN_METHOD), _write(tmp_path, "bad.cif", RAGGED_LOOP)]

    def records(path):
        out = []
        for raw in icsd.read(path):
            try:
                out.append(icsd.normalise(raw))
            except Exception as exc:  # noqa: BLE001 - RecordRejected; compared by its reason
                out.append(getattr(exc, "reason_code", repr(exc)))
        return out

    serial = [records(p) for p in files]
    with distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=2,
                                  dashboard_address="127.0.0.1:0") as cluster, distributed.Client(cluster) as client:
        with cif.use_dask(client, chunk_size=2):
            parallel = [records(p) for p in files]
    assert parallel == serial
    assert cif._dask is None
