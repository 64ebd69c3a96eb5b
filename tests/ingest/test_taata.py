"""TAATA ingester: httk POSCARs with energies in the first line, formation energies from the folder's elements."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from matlake import db
from matlake.ingest import taata
from matlake.ingest.framework import ingest
from matlake.ingest.records import RecordRejected
from tests.conftest import shared_data

RUN = "'001/ht.task.triolith--default.{id}.cleanup.0.unclaimed.2.finished/ht.run.2016-03-10_13.38.07'"
TAGS = "['(Tag) original structure: CuF3K', '(Tag) type: ternary']"


def poscar(energy: str, species: list[tuple[str, int]], coords: list[str], a: float = 3.0, tags: str = TAGS,
           species_line: bool = True, run_id: str = "x") -> str:
    lines = [f"{energy} {RUN.format(id=run_id)} {tags}", "           1",
             f"     {a:.6f}    0.000000    0.000000", f"     0.000000    {a:.6f}    0.000000",
             f"     0.000000    0.000000    {a:.6f}"]
    if species_line:
        lines.append("   " + "   ".join(el for el, _ in species))
    lines += ["   " + "   ".join(str(n) for _, n in species), "Direct", *("   " + c for c in coords)]
    return "\n".join(lines) + "\n"


TWO = ["0.0 0.0 0.0", "0.5 0.5 0.5"]
FOLDER = {
    "ti-hcp.poscar": poscar("-.15600000E+02", [("Ti", 2)], TWO),          # -7.8 eV/atom: the Ti reference
    "ti-bcc.poscar": poscar("-.77000000E+01", [("Ti", 1)], TWO[:1]),      # -7.7 eV/atom: higher, not used
    "ti-flat.poscar": poscar("-.20000000E+02", [("Ti", 1)], TWO[:1], a=0.0),  # lowest, but a flat cell: rejected
    "zn.poscar": poscar("-.22000000E+01", [("Zn", 2)], TWO),              # -1.1 eV/atom
    "n2.poscar": poscar("-.66400000E+02", [("N", 8)], [f"0.{i} 0.{i} 0.{i}" for i in range(1, 9)], a=6.0),  # -8.3
    "tizn-nan.poscar": poscar("NaN", [("Ti", 1), ("Zn", 1), ("N", 2)], TWO * 2),
    "xx.poscar": poscar("-.10000000E+02", [("Xx", 1), ("N", 1)], TWO),
    "vasp4.poscar": poscar("-.10000000E+02", [("Ti", 1), ("N", 1)], TWO, species_line=False),
    "ta-n.poscar": poscar("-.18000000E+02", [("Ta", 1), ("N", 1)], TWO),  # no Ta reference in the folder
}
COMPOUND = poscar("-.30000000E+02", [("Ti", 1), ("Zn", 1), ("N", 2)],
                  ["0.0 0.0 0.0", "0.5 0.5 0.5", "0.5 0.0 0.0", "0.0 0.5 0.5"], run_id="abc123")


@pytest.fixture
def folder(tmp_path) -> Path:
    for name, text in FOLDER.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "abc123.poscar.gz").write_bytes(gzip.compress(COMPOUND.encode()))
    (tmp_path / "README.txt").write_text("not a POSCAR")
    return tmp_path


def normalised(path: Path):
    [raw] = taata.read(path)
    return raw.key, taata.normalise(raw)


def test_references_are_the_lowest_valid_elemental_phases(folder):
    refs = taata.folder_references(folder)
    assert {el: (r.energy_per_atom, r.record_id) for el, r in refs.items()} == {
        "Ti": (-7.8, "ti-hcp"), "Zn": (-1.1, "zn"), "N": (-8.3, "n2")}


def test_formation_energy_by_hand(folder):
    key, rec = normalised(folder / "abc123.poscar.gz")
    assert key == "abc123"
    e_form = [p for p in rec.properties if p.property == "formation_energy_per_atom"][0]
    # (-30.0 - (-7.8 - 1.1 - 2 * 8.3)) / 4 = -4.5 / 4
    assert e_form.value == pytest.approx(-1.125, abs=1e-12)
    assert e_form.reference == "lowest-energy elemental POSCAR in the same folder: N=n2, Ti=ti-hcp, Zn=zn"
    assert [p.property for p in rec.properties] == ["uncorrected_energy", "formation_energy_per_atom"]
    assert rec.properties[0].value == -30.0 and rec.properties[0].method == "PBE"
    assert rec.extra["tags"] == {"original_structure": "CuF3K", "type": "ternary"}
    assert "abc123" in rec.extra["ht_run"]
    assert rec.structures[0].kind == "relaxed" and rec.structures[0].n_sites == 4
    _, element = normalised(folder / "ti-bcc.poscar")
    assert element.properties[1].value == pytest.approx(0.1)  # 0.1 eV/atom above hcp Ti


def test_missing_reference_keeps_the_record_without_formation_energy(folder):
    _, rec = normalised(folder / "ta-n.poscar")
    assert [p.property for p in rec.properties] == ["uncorrected_energy"]
    assert rec.extra["formation_energy_not_computed"] == "no elemental POSCAR for Ta in the folder"


def test_ingest_counts_and_rejects(folder, any_url):
    engine = db.create_engine(any_url)
    db.upgrade(engine)
    files = sorted(p for p in folder.iterdir() if "poscar" in p.name)
    [s] = ingest(taata, files, engine=engine)
    assert (s.n_read, s.n_inserted, s.n_rejected) == (10, 6, 4)
    assert s.rejects_by_reason == {"non_positive_volume": 1, "non_finite_value": 1, "unknown_element": 1,
                                   "missing_species": 1}
    with engine.connect() as conn:
        value = conn.execute(sa.text(
            "SELECT p.value FROM property_value p JOIN material m ON m.id = p.material_id "
            "WHERE m.source_record_id = 'abc123' AND p.property = 'formation_energy_per_atom'")).scalar()
    assert value == pytest.approx(-1.125)


def test_first_line_without_an_energy_is_rejected():
    text = poscar("energy?", [("Ti", 1)], TWO[:1])
    with pytest.raises(RecordRejected) as err:
        taata.parse_poscar(text, "k")
    assert err.value.reason_code == "missing_energy"


@pytest.mark.shared_data
def test_shared_poscars_reproduce_aviary_formation_energies(tmp_path):
    folder = shared_data("taata/raw_poscars")
    examples = json.loads(shared_data("taata/aviary_examples.json").read_text())
    files = sorted(folder.glob("*.poscar"))
    assert len(files) == 74
    e_form = {}
    for path in files:
        key, rec = normalised(path)
        e_form[key] = next(p.value for p in rec.properties if p.property == "formation_energy_per_atom")
    expected = {examples["material_id"][i]: examples["E_f"][i] for i in examples["material_id"]}
    assert len(expected) == 68
    assert max(abs(e_form[k] - v) for k, v in expected.items()) < 1e-9
    engine = db.create_engine(f"duckdb:///{tmp_path / 'taata.duckdb'}")
    db.upgrade(engine)
    [s] = ingest(taata, files, engine=engine)
    assert (s.n_read, s.n_inserted, s.n_rejected) == (74, 74, 0)


def test_references_follow_changes_to_the_folder(folder):
    assert taata.folder_references(folder)["Ti"].record_id == "ti-hcp"
    (folder / "ti-omega.poscar").write_text(poscar("-.23700000E+02", [("Ti", 3)], TWO + ["0.5 0.0 0.0"]))
    ref = taata.folder_references(folder)["Ti"]
    assert ref.record_id == "ti-omega" and ref.energy_per_atom == pytest.approx(-7.9)
    (folder / "ti-omega.poscar").unlink()
    assert taata.folder_references(folder)["Ti"].record_id == "ti-hcp"


def test_aviary_examples_table_is_its_own_dataset(tmp_path):
    import json

    from matlake import db
    from matlake.ingest import taata
    from matlake.ingest.framework import ingest

    structure = {"@module": "pymatgen.core.structure", "@class": "Structure", "charge": 0,
                 "lattice": {"matrix": [[3.2, 0, 0], [0, 3.2, 0], [0, 0, 5.1]]},
                 "sites": [{"species": [{"element": "Zr", "occu": 1}], "abc": [0, 0, 0], "label": "Zr"},
                           {"species": [{"element": "N", "occu": 1}], "abc": [0.5, 0.5, 0.5], "label": "N"}]}
    table = {"material_id": {"0": "aaa", "1": "bbb", "2": "ccc"}, "composition": {"0": "ZrN", "1": "ZrN", "2": "ZrN"},
             "E_f": {"0": "-1.5", "1": "nan", "2": "-1.2"}, "protostructure": {"0": "AB_cP2_221_a_b:N-Zr",
                                                                             "1": None, "2": None},
             "structure": {"0": repr(structure), "1": repr(structure), "2": "{broken"}}
    path = tmp_path / "examples.json"
    path.write_text(json.dumps(table))
    engine = db.create_engine(f"duckdb:///{tmp_path / 'x.duckdb'}")
    db.upgrade(engine)
    [run] = ingest(taata, [path], engine=engine)
    assert run.dataset == "aviary_examples"
    assert (run.n_read, run.n_inserted) == (3, 1)
    assert run.rejects_by_reason == {"non_finite_value": 1, "malformed_structure": 1}


def test_shared_aviary_examples_load(tmp_path):
    from matlake import db
    from matlake.ingest import taata
    from matlake.ingest.framework import ingest
    from tests.conftest import shared_data

    path = shared_data("taata/aviary_examples.json")
    engine = db.create_engine(f"duckdb:///{tmp_path / 'x.duckdb'}")
    db.upgrade(engine)
    [run] = ingest(taata, [path], engine=engine)
    assert (run.n_read, run.n_inserted, run.n_rejected) == (68, 68, 0)
