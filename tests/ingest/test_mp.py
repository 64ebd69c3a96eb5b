"""Materials Project ingester: hand-written fixtures in each MP format, rejects, the database, and the shared files."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import math
from pathlib import Path

import pytest
import sqlalchemy as sa

from matlake import db
from matlake.errors import InputError
from matlake.ingest import mp
from matlake.ingest.framework import ingest
from matlake.ingest.mp.tasks import read_tasks
from matlake.ingest.records import RecordRejected
from tests.conftest import shared_data

# ---- fixtures in MP's formats -----------------------------------------------------------------------------------

LI2O_A = 4.61  # antifluorite, fcc primitive cell: O at the origin, Li at +-1/4
FCC = [[0.0, LI2O_A / 2, LI2O_A / 2], [LI2O_A / 2, 0.0, LI2O_A / 2], [LI2O_A / 2, LI2O_A / 2, 0.0]]
SI_A = 5.47
SI_FCC = [[0.0, SI_A / 2, SI_A / 2], [SI_A / 2, 0.0, SI_A / 2], [SI_A / 2, SI_A / 2, 0.0]]
POTCARS = {"Li": "PAW_PBE Li_sv 23Jan2001", "O": "PAW_PBE O 08Apr2002", "Fe": "PAW_PBE Fe_pv 06Sep2000",
           "Si": "PAW_PBE Si 05Jan2001"}


def structure_dict(lattice: list[list[float]], sites: list[tuple[str, list[float]]]) -> dict:
    return {
        "@module": "pymatgen.core.structure", "@class": "Structure", "charge": 0, "lattice": {"matrix": lattice},
        "sites": [{"species": [{"element": el, "occu": 1}], "abc": abc, "label": el, "properties": {}}
                  for el, abc in sites],
    }


LI2O = structure_dict(FCC, [("O", [0, 0, 0]), ("Li", [0.25, 0.25, 0.25]), ("Li", [0.75, 0.75, 0.75])])
SI = structure_dict(SI_FCC, [("Si", [0, 0, 0]), ("Si", [0.25, 0.25, 0.25])])


def cse(material_id: str, structure: dict, energy: float, *, run_type: str = "GGA",
        adjustments: list[dict] | None = None, entry_id: str | None = None) -> dict:
    """A ComputedStructureEntry dict as MP writes it (energy is the uncorrected energy of the cell)."""
    composition: dict[str, float] = {}
    for site in structure["sites"]:
        el = site["species"][0]["element"]
        composition[el] = composition.get(el, 0.0) + 1.0
    return {
        "@module": "pymatgen.entries.computed_entries", "@class": "ComputedStructureEntry",
        "energy": energy, "composition": composition, "entry_id": entry_id or material_id, "correction": 0.0,
        "energy_adjustments": adjustments or [],
        "parameters": {"potcar_spec": [{"titel": POTCARS[el], "hash": None} for el in composition],
                       "run_type": run_type, "is_hubbard": run_type == "GGA+U", "hubbards": {}},
        "data": {"material_id": material_id, "task_id": material_id + "-task", "oxide_type": "oxide"},
        "structure": structure,
    }


def stale_oxide_adjustment(per_atom: float, n_atoms: float) -> dict:
    return {"@module": "pymatgen.entries.computed_entries", "@class": "CompositionEnergyAdjustment",
            "adj_per_atom": per_atom, "n_atoms": n_atoms, "uncertainty_per_atom": 0.0,
            "name": "MP2020 anion correction (oxide)", "cls": None,
            "description": "Composition-based energy adjustment"}


def reference_entries() -> dict:
    """Elemental references: Li at -1.9 eV/atom, O at -4.95 eV/atom."""
    def entry(el: str, n: float, energy: float, mid: str) -> dict:
        return {"@module": "pymatgen.entries.computed_entries", "@class": "ComputedEntry", "energy": energy,
                "composition": {el: n}, "entry_id": f"{mid}-GGA", "correction": 0.0, "energy_adjustments": [],
                "parameters": {"run_type": "GGA"}, "data": {"material_id": mid}}
    return {"Li": entry("Li", 2.0, -3.8, "mp-135"), "O": entry("O", 8.0, -39.6, "mp-12957")}


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def engine(any_url):
    engine = db.create_engine(any_url)
    db.upgrade(engine)
    return engine


def records(path: Path) -> dict:
    """Normalised records (or the reject reason) by key, without a database."""
    out = {}
    for raw in mp.read(path):
        try:
            out[raw.key] = mp.normalise(raw)
        except RecordRejected as exc:
            out[raw.key] = exc.reason_code
    return out


def prop(record, name: str, **match):
    found = [p for p in record.properties if p.property == name
             and all(getattr(p, k) == v for k, v in match.items())]
    assert len(found) == 1, (name, record.properties)
    return found[0]


# ---- computed entries -------------------------------------------------------------------------------------------


def test_formation_energy_reapplies_mp2020_and_uses_the_references_beside_the_file(tmp_path):
    write_json(tmp_path / "mp-elemental-reference-entries.json", reference_entries())
    # the stored correction (-0.5 eV per O) is stale: MP2020's oxide correction is -0.687 eV per O atom
    entries = write_json(tmp_path / "entries.json",
                         [cse("mp-1960", LI2O, -14.0, adjustments=[stale_oxide_adjustment(-0.5, 1.0)])])
    assert mp.dataset(entries) == mp.ENTRIES
    rec = records(entries)["mp-1960"]
    # by hand: E_corr = -14.0 - 0.687 = -14.687 eV; refs 2 * -1.9 + 1 * -4.95 = -8.75 eV; (-14.687 + 8.75) / 3
    e_form = prop(rec, "formation_energy_per_atom")
    assert e_form.value == pytest.approx(-1.979, abs=1e-12)
    assert e_form.correction_scheme == "MaterialsProject2020Compatibility"
    assert e_form.correction_scheme_version == f"pymatgen {mp.pymatgen_version()}"
    assert "mp-elemental-reference-entries.json" in e_form.reference
    assert e_form.extra["reference_entry_ids"] == {"Li": "mp-135-GGA", "O": "mp-12957-GGA"}
    assert prop(rec, "energy_per_atom").value == pytest.approx(-14.687 / 3, abs=1e-12)
    assert prop(rec, "uncorrected_energy").value == -14.0
    assert rec.extra["stored_correction_ev"] == -0.5 and rec.extra["stored_correction_differs"] is True
    assert rec.structures[0].kind == "relaxed" and rec.structures[0].calculation_id == "mp-1960-task"
    assert all(p.method == "GGA" for p in rec.properties)


def test_entries_without_references_or_outside_mp2020_keep_their_energies(tmp_path):
    entries = write_json(tmp_path / "entries.json", [cse("mp-1960", LI2O, -14.0), cse("mp-2", SI, -10.8,
                                                                                     run_type="r2SCAN")])
    recs = records(entries)
    assert [p.property for p in recs["mp-1960"].properties] == ["uncorrected_energy", "energy_per_atom"]
    assert "no *elemental*ref*.json* file" in recs["mp-1960"].extra["formation_energy_not_computed"]
    assert [p.property for p in recs["mp-2"].properties] == ["uncorrected_energy"]
    assert recs["mp-2"].properties[0].method == "r2SCAN" and recs["mp-2"].extra["mp2020_not_applied"]


def test_bad_entries_are_rejected_with_reasons(engine, tmp_path):
    write_json(tmp_path / "mp-elemental-reference-entries.json", reference_entries())
    flat = structure_dict([[3, 0, 0], [0, 3, 0], [0, 0, 0]], [("Li", [0, 0, 0]), ("O", [0.5, 0.5, 0])])
    odd = structure_dict(FCC, [("Xx", [0, 0, 0]), ("Li", [0.25, 0.25, 0.25]), ("Li", [0.75, 0.75, 0.75])])
    good = cse("mp-1960", LI2O, -14.0)
    entries = [good, cse("mp-nan", LI2O, float("nan")), cse("mp-flat", flat, -5.0), dict(cse("mp-x", LI2O, -1.0),
               structure=odd, composition={"Xx": 1, "Li": 2}), good, {**good, "data": {}, "entry_id": None}]
    path = tmp_path / "entries.json"
    path.write_text(json.dumps(entries))  # NaN is written as the bare token NaN, as pymatgen's to_json does
    [s] = ingest(mp, [path], engine=engine)
    assert (s.n_read, s.n_inserted, s.n_rejected) == (6, 1, 5)
    assert s.rejects_by_reason == {"non_finite_value": 1, "non_positive_volume": 1, "unknown_element": 1,
                                   "duplicate_id": 1, "missing_id": 1}
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT property, value, correction_scheme FROM property_value ORDER BY property")).all()
    assert [r.property for r in rows] == ["energy_per_atom", "formation_energy_per_atom", "uncorrected_energy"]
    assert rows[1].value == pytest.approx(-1.979) and rows[1].correction_scheme == "MaterialsProject2020Compatibility"


def test_elemental_reference_file_is_its_own_dataset(tmp_path):
    path = write_json(tmp_path / "mp-elemental-reference-entries.json", reference_entries())
    assert mp.dataset(path) == mp.ELEMENTAL_REFERENCES
    recs = records(path)
    assert set(recs) == {"mp-135", "mp-12957"}
    assert prop(recs["mp-12957"], "energy_per_atom").value == pytest.approx(-4.95)
    assert recs["mp-12957"].extra["reference_for"] == "O"


# ---- task documents ---------------------------------------------------------------------------------------------


def ionic_step(lattice_scale: float, energy: float, force: float) -> dict:
    lattice = [[x * lattice_scale for x in row] for row in SI_FCC]
    return {"e_fr_energy": energy, "e_wo_entrp": energy, "e_0_energy": 0.0, "electronic_steps": [],
            "forces": [[force, 0.0, 0.0], [-force, 0.0, 0.0]], "stress": [[5.0 * force, 0, 0], [0, 1, 0], [0, 0, 1]],
            "structure": structure_dict(lattice, [("Si", [0, 0, 0]), ("Si", [0.25, 0.25, 0.25])])}


def relax_task(task_id: str = "mp-ft", **changes) -> dict:
    """A two-stage relaxation: calcs_reversed lists the last calculation first."""
    first = {"task_type": "Structure Optimization", "input": {"incar": {"ISIF": 3, "ICHARG": 1}},
             "output": {"ionic_steps": [ionic_step(1.02, -10.70, 0.3), ionic_step(1.01, -10.80, 0.1)]}}
    second = {"task_type": "Structure Optimization", "input": {"incar": {"ISIF": 3}},
              "output": {"ionic_steps": [ionic_step(1.0, -10.85, 0.0)]}}
    doc = {"task_id": task_id, "formula_pretty": "Si", "task_type": "Structure Optimization", "run_type": "GGA",
           "calc_type": "GGA Structure Optimization", "state": "successful", "symmetry": {"number": 227},
           "input": {"structure": ionic_step(1.02, 0, 0)["structure"], "is_hubbard": False},
           "output": {"structure": SI, "energy": -10.85, "energy_per_atom": -5.425, "bandgap": 0.61},
           "calcs_reversed": [second, first]}
    doc.update(changes)
    return doc


def nscf_task() -> dict:
    calc = {"task_type": "NSCF Uniform", "input": {"incar": {"ICHARG": 11}},
            "output": {"ionic_steps": [ionic_step(1.0, -10.2, 0.0)]}}
    return {"task_id": "mp-dryyt", "formula_pretty": "Si", "task_type": "NSCF Uniform", "run_type": "GGA",
            "state": "successful", "input": {"structure": SI}, "output": {"structure": SI, "energy": -10.2,
                                                                           "bandgap": 0.65},
            "calcs_reversed": [calc]}


def test_task_documents_give_structures_and_relaxation_steps(engine, tmp_path):
    broken_step = relax_task("mp-nan")
    broken_step["calcs_reversed"][0]["output"]["ionic_steps"][0]["e_wo_entrp"] = float("nan")
    broken_step["calcs_reversed"][0]["output"]["ionic_steps"][0]["e_fr_energy"] = float("nan")
    docs = [relax_task(), nscf_task(), relax_task("mp-failed", state="failed"), broken_step]
    path = tmp_path / "tasks.json.gz"
    path.write_bytes(gzip.compress(json.dumps(docs).encode()))
    assert mp.dataset(path) == mp.TASKS
    recs = records(path)
    assert recs["mp-failed"] == "unsuccessful_task" and recs["mp-nan"] == "non_finite_value"
    rec = recs["mp-ft"]
    assert [(s.kind, s.calculation_id) for s in rec.structures] == [("initial", "mp-ft"), ("relaxed", "mp-ft")]
    assert rec.structures[1].spacegroup_number == 227
    assert rec.structures[0].volume_a3 == pytest.approx(rec.structures[1].volume_a3 * 1.02**3)
    steps = rec.relaxation_steps
    assert [(s.calculation_id, s.step_index, s.energy_ev) for s in steps] == [
        ("mp-ft", 0, -10.70), ("mp-ft", 1, -10.80), ("mp-ft", 2, -10.85)]
    assert steps[0].forces_ev_per_a == [[0.3, 0.0, 0.0], [-0.3, 0.0, 0.0]] and steps[0].stress_kbar[0][0] == 1.5
    assert steps[0].species == ["Si", "Si"] and steps[0].n_sites == 2
    assert prop(rec, "uncorrected_energy").value == -10.85 and prop(rec, "band_gap").value == 0.61
    assert rec.extra["tasks"]["mp-ft"]["legacy_task_id"] == "mp-149"
    nscf = recs["mp-dryyt"]
    assert nscf.relaxation_steps == [] and [p.property for p in nscf.properties] == ["band_gap"]

    [s] = ingest(mp, [path], engine=engine)
    assert (s.n_read, s.n_inserted, s.n_rejected) == (4, 2, 2)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT calculation_id, step_index, energy_ev, energy_per_atom_ev FROM relaxation_step ORDER BY 2")).all()
    assert [tuple(r) for r in rows] == [("mp-ft", 0, -10.70, -5.35), ("mp-ft", 1, -10.80, -5.40),
                                        ("mp-ft", 2, -10.85, -5.425)]


def test_tasks_of_one_material_become_one_record():
    docs = [relax_task("mp-ft", material_id="mp-149"), {**nscf_task(), "material_id": "mp-149"}]
    raws = list(read_tasks(_write_tmp_json(docs)))
    assert [r.key for r in raws] == ["mp-149"]
    rec = mp.normalise(raws[0])
    assert rec.extra["task_ids"] == ["mp-ft", "mp-dryyt"]
    assert [s.calculation_id for s in rec.structures] == ["mp-ft", "mp-ft", "mp-dryyt", "mp-dryyt"]


def _write_tmp_json(obj) -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp()) / "tasks.json"
    return write_json(path, obj)


def test_alpha_task_ids_decode_to_legacy_ids():
    assert mp.legacy_task_id("mp-ft") == "mp-149"
    assert mp.legacy_task_id("mp-cmxxl") == "mp-1141021"
    assert mp.legacy_task_id("mp-1141021") is None


# ---- mp-api summary documents -----------------------------------------------------------------------------------


def summary_doc(material_id: str, formula: str, structure: dict, **fields) -> dict:
    doc = {"material_id": material_id, "formula_pretty": formula, "nsites": len(structure["sites"]),
           "structure": structure, "symmetry": {"crystal_system": "Cubic", "symbol": "Fd-3m", "number": 227,
                                                "point_group": "m-3m", "symprec": 0.1, "version": "2.0.2"},
           "uncorrected_energy_per_atom": -5.42, "energy_per_atom": -5.42, "formation_energy_per_atom": 0.0,
           "energy_above_hull": 0.0, "is_stable": True, "band_gap": 0.61, "theoretical": False, "deprecated": False,
           "builder_meta": {"emmet_version": "0.84.2", "pymatgen_version": "2024.6.10",
                            "database_version": "2025.02.12"}}
    doc.update(fields)
    return doc


def test_summary_documents_from_a_response_page_and_a_list(engine, tmp_path):
    page = {"data": [summary_doc("mp-149", "Si", SI),
                     summary_doc("mp-1960", "Li2O", LI2O, formation_energy_per_atom=-2.062, band_gap=4.9),
                     summary_doc("mp-nan", "Si", SI, formation_energy_per_atom=float("nan")),
                     summary_doc("mp-odd", "Si", structure_dict(SI_FCC, [("Qq", [0, 0, 0])]))],
            "meta": {"total_doc": 4}}
    path = write_json(tmp_path / "summary-page.json", page)
    listed = write_json(tmp_path / "summary-list.json", [summary_doc("mp-149", "Si", SI)])
    assert mp.dataset(path) == mp.dataset(listed) == mp.SUMMARY
    recs = records(path)
    assert recs["mp-nan"] == "non_finite_value" and recs["mp-odd"] == "unknown_element"
    li2o = recs["mp-1960"]
    assert prop(li2o, "formation_energy_per_atom").value == -2.062
    assert prop(li2o, "uncorrected_energy").value == pytest.approx(-5.42 * 3)
    assert li2o.structures[0].spacegroup_number == 227 and li2o.extra["database_version"] == "2025.02.12"
    assert li2o.extra["is_stable"] is True and li2o.extra["theoretical"] is False
    [s] = ingest(mp, [path], engine=engine)
    assert (s.n_inserted, s.n_rejected) == (2, 2)


# ---- CSV tables and matbench JSON -------------------------------------------------------------------------------


def test_roost_csvs_read_nan_as_sodium_nitride_and_reject_bad_rows(engine, tmp_path):
    text = ("task_id,composition,formation_energy_per_atom\n"
            "mp-1080032,NaN,-0.0859\n"       # sodium nitride, not a missing value
            "mp-1960,Li2O,-2.062\n"
            "mp-3,Fe2O3,nan\n"
            "mp-4,Xx2O,-1.0\n"
            ",NaCl,-2.0\n"
            "mp-5,SiO2,-3.0,extra\n"
            "mp-6,MgO,abc\n")
    raw_path = tmp_path / "mp-formation.csv"
    raw_path.write_text(text)
    assert mp.dataset(raw_path) == mp.ROOST_FORMATION_ENERGY
    [s] = ingest(mp, [raw_path], engine=engine)
    assert (s.n_read, s.n_inserted, s.n_rejected) == (7, 2, 5)
    assert s.rejects_by_reason == {"non_finite_value": 1, "unknown_element": 1, "missing_id": 1,
                                   "malformed_row": 1, "non_numeric_value": 1}
    with engine.connect() as conn:
        formula = conn.execute(sa.text(
            "SELECT c.formula FROM material m JOIN material_revision r ON r.material_id = m.id "
            "JOIN composition c ON c.id = r.composition_id WHERE m.source_record_id = 'mp-1080032'")).scalar()
    assert formula == "NaN"  # the canonical key of Na1 N1 (Na before N by electronegativity)


@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress, bz2.compress])
def test_compressed_csvs_read_like_plain_ones(tmp_path, compress):
    text = "task_id,composition,band_gap\nmp-1960,Li2O,4.9\nmp-149,Si,0.61\n"
    path = tmp_path / "mp-non-metals.csv.z"
    path.write_bytes(compress(text.encode()))
    assert mp.dataset(path) == mp.ROOST_BAND_GAP
    recs = records(path)
    assert prop(recs["mp-149"], "band_gap").value == 0.61 and recs["mp-149"].properties[0].unit == "eV"


def test_cgcnn_csv_builds_structures_from_strings(tmp_path):
    lattice = json.dumps(FCC)
    sites = "['O @ 0.0 0.0 0.0', 'Li @ 0.25 0.25 0.25', 'Li @ 0.75 0.75 0.75']"
    bad_sites = "['O @ 0.0 0.0', 'Li @ 0.25 0.25 0.25']"
    path = tmp_path / "cgcnn-example.csv"
    path.write_text("material_id,composition,formation_energy_per_atom,lattice,sites\n"
                    f'mp-1960,Li2O,-2.062,"{lattice}","{sites}"\n'
                    f'mp-2,Li2O,-2.0,"{lattice}","{bad_sites}"\n')
    assert mp.dataset(path) == mp.CGCNN_FORMATION_ENERGY
    recs = records(path)
    st = recs["mp-1960"].structures[0]
    assert st.species == ["O", "Li", "Li"] and st.volume_a3 == pytest.approx(LI2O_A**3 / 4)
    assert recs["mp-1960"].properties[0].structure_index == 0
    assert recs["mp-2"] == "unreadable_structure"


def test_matbench_formula_csvs_get_ids_from_formula_and_occurrence(tmp_path):
    path = tmp_path / "matbench_mp_e_form.csv"
    path.write_text("formula,target\nC1Cd1,2.10\nC1Pt1,1.99\nC1Cd1,1.98\n")
    gap = tmp_path / "matbench_mp_gap.csv"
    gap.write_text("formula,target\nK4Mn4O8,1.33\n")
    assert (mp.dataset(path), mp.dataset(gap)) == (mp.MATBENCH_MP_E_FORM, mp.MATBENCH_MP_GAP)
    recs = records(path)
    assert list(recs) == ["matbench_mp_e_form:C1Cd1#1", "matbench_mp_e_form:C1Pt1#1", "matbench_mp_e_form:C1Cd1#2"]
    assert recs["matbench_mp_e_form:C1Cd1#2"].properties[0].value == 1.98
    assert records(gap)["matbench_mp_gap:K4Mn4O8#1"].properties[0].property == "band_gap"
    odd = tmp_path / "formulas.csv"
    odd.write_text("formula,target\nNaCl,1\n")
    with pytest.raises(InputError, match="matbench task"):
        mp.dataset(odd)


def test_matbench_phonons_split_json(tmp_path):
    table = {"index": [0, 1, 2], "columns": ["structure", "last phdos peak"],
             "data": [[SI, 517.4], [LI2O, 610.0], [LI2O, None]]}
    path = tmp_path / "matbench_phonons.json.gz"
    path.write_bytes(gzip.compress(json.dumps(table).encode()))
    assert mp.dataset(path) == mp.MATBENCH_PHONONS
    recs = records(path)
    peak = recs["matbench_phonons:0"].properties[0]
    assert (peak.property, peak.value, peak.unit, peak.structure_index) == ("phonon_last_dos_peak", 517.4, "cm^-1", 0)
    assert recs["matbench_phonons:2"] == "missing_value"


def test_unknown_files_are_input_errors(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InputError):
        mp.dataset(path)


# ---- the shared MP files ----------------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_shared_entries_reproduce_mp_formation_energies():
    path = shared_data("mp/emmet_Li-Fe-O_cses.json.gz")
    recs = records(path)
    assert len(recs) == 375 and all(not isinstance(r, str) for r in recs.values())
    assert not any(r.extra.get("stored_correction_differs") for r in recs.values())
    # values shown on materialsproject.org (GGA/GGA+U, MP2020) for Li2O and alpha-Fe2O3
    assert prop(recs["mp-1960"], "formation_energy_per_atom").value == pytest.approx(-2.062, abs=2e-3)
    assert prop(recs["mp-19770"], "formation_energy_per_atom").value == pytest.approx(-1.708, abs=2e-3)
    assert prop(recs["mp-19770"], "formation_energy_per_atom").method == "GGA+U"


@pytest.mark.shared_data
def test_shared_task_documents():
    recs = {}
    for name in ("emmet_test_si_tasks.json.gz", "emmet_test_As2SO6_tasks.json.gz"):
        recs.update(records(shared_data(f"mp/{name}")))
    assert len(recs) == 15 and all(not isinstance(r, str) for r in recs.values())
    relax = recs["mp-djowr"]  # two relaxation runs of 4 and 86 ionic steps
    assert [s.step_index for s in relax.relaxation_steps] == list(range(90))
    assert relax.relaxation_steps[-1].energy_ev == prop(relax, "uncorrected_energy").value
    assert recs["mp-ddzda"].extra["tasks"]["mp-ddzda"]["legacy_task_id"] == "mp-1440634"
    assert recs["mp-dryyt"].relaxation_steps == []  # NSCF


@pytest.mark.shared_data
def test_shared_small_tables():
    cgcnn = records(shared_data("mp/aviary_cgcnn-example.csv"))
    assert len(cgcnn) == 99 and all(not isinstance(r, str) for r in cgcnn.values())
    phonons = records(shared_data("mp/aviary_matbench_phonons.json.gz"))
    assert len(phonons) == 1265 and all(not isinstance(r, str) for r in phonons.values())
    assert all(math.isfinite(r.properties[0].value) for r in phonons.values())


@pytest.mark.shared_data
@pytest.mark.slow
def test_shared_big_csvs_normalise_without_rejects():
    counts = {}
    for name, n in [("aviary_mp-formation.csv", 84_295), ("aviary_mp-non-metals.csv", 43_921),
                    ("crabnet_matbench_mp_e_form.csv", 132_752), ("crabnet_matbench_mp_gap.csv", 106_113)]:
        recs = records(shared_data(f"mp/{name}"))
        bad = {k: v for k, v in recs.items() if isinstance(v, str)}
        counts[name] = (len(recs), bad)
        assert (len(recs), bad) == (n, {}), name


def test_unreadable_references_reject_the_entries_file(engine, tmp_path):
    (tmp_path / "mp-elemental-reference-entries.json.gz").write_bytes(gzip.compress(b'{"Li": {"energy": -3.8')[:-6])
    entries = write_json(tmp_path / "entries.json", [cse("mp-1960", LI2O, -14.0)])
    [s] = ingest(mp, [entries], engine=engine)
    assert s.n_inserted == 0 and s.rejects_by_reason.get("unreadable_references") == 1
