"""Relaxation trajectories: MP task documents -> relaxation_step rows -> Parquet with Arrow list arrays."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from matlake import db
from matlake.featurestore.builders import build_feature_set
from matlake.featurestore.store import FeatureStore
from matlake.ingest import mp
from matlake.ingest.framework import ingest
from tests.conftest import shared_data

A = 4.0  # a two-atom CsCl-type cell that shrinks while it relaxes


def structure(scale: float, shift: float = 0.0) -> dict:
    lattice = [[A * scale, 0.0, 0.0], [0.0, A * scale, 0.0], [0.0, 0.0, A * scale]]
    sites = [("Cs", [0.0, 0.0, 0.0]), ("Cl", [0.5 + shift, 0.5, 0.5])]
    return {"@module": "pymatgen.core.structure", "@class": "Structure", "charge": 0, "lattice": {"matrix": lattice},
            "sites": [{"species": [{"element": el, "occu": 1}], "abc": abc, "label": el, "properties": {}}
                      for el, abc in sites]}


def step(scale: float, shift: float, energy: float, force: float) -> dict:
    return {"e_fr_energy": energy, "e_wo_entrp": energy, "e_0_energy": energy, "electronic_steps": [],
            "forces": [[force, 0.0, 0.0], [-force, 0.0, 0.0]],
            "stress": [[10.0 * force, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]],
            "structure": structure(scale, shift)}


def relaxation(task_id: str, energies: tuple[float, float, float] = (-7.0, -7.5, -7.6)) -> dict:
    """A task of two relaxation runs (calcs_reversed lists the last first): 2 + 1 ionic steps."""
    first = {"task_type": "Structure Optimization", "input": {"incar": {"ISIF": 3}},
             "output": {"ionic_steps": [step(1.05, 0.02, energies[0], 0.4), step(1.02, 0.01, energies[1], 0.2)]}}
    second = {"task_type": "Structure Optimization", "input": {"incar": {"ISIF": 3}},
              "output": {"ionic_steps": [step(1.0, 0.0, energies[2], 0.0)]}}
    return {"task_id": task_id, "formula_pretty": "CsCl", "task_type": "Structure Optimization", "run_type": "GGA",
            "state": "successful", "input": {"structure": structure(1.05, 0.02)},
            "output": {"structure": structure(1.0), "energy": energies[2], "bandgap": 5.0},
            "calcs_reversed": [second, first]}


def static(task_id: str) -> dict:
    calc = {"task_type": "Static", "input": {"incar": {"ISIF": 2}},
            "output": {"ionic_steps": [step(1.0, 0.0, -7.61, 0.01)]}}
    return {"task_id": task_id, "formula_pretty": "CsCl", "task_type": "Static", "run_type": "GGA",
            "state": "successful", "input": {"structure": structure(1.0)},
            "output": {"structure": structure(1.0), "energy": -7.61}, "calcs_reversed": [calc]}


def write_tasks(path: Path, docs: list[dict]) -> Path:
    path.write_bytes(gzip.compress(json.dumps(docs).encode()))
    return path


@pytest.fixture
def engine(any_url):
    engine = db.create_engine(any_url)
    db.upgrade(engine)
    return engine


def test_steps_become_rows_with_array_columns_and_structure_links(engine, tmp_path):
    [s] = ingest(mp, [write_tasks(tmp_path / "tasks.json.gz", [relaxation("mp-aa"), static("mp-ab")])],
                 engine=engine)
    assert (s.n_inserted, s.n_rejected) == (2, 0)
    store = FeatureStore(tmp_path / "features", engine)
    info = build_feature_set("trajectories", engine=engine, store=store, use_dask=False)
    assert info.row_count == 4
    assert info.column_schema["forces_ev_per_a"] == "list<element: fixed_size_list<element: double>[3]>"
    table = store.read(info, verify=True).sort_by([("calculation_id", "ascending"), ("step_index", "ascending")])
    rows = table.to_pylist()
    with engine.connect() as conn:
        structures = {(r.calculation_id, r.kind): r.id for r in conn.execute(sa.text(
            "SELECT id, calculation_id, kind FROM structure WHERE valid_to_run_id IS NULL")).all()}
        step_ids = conn.execute(sa.text("SELECT id FROM relaxation_step ORDER BY calculation_id, step_index")).scalars()
        assert [r["relaxation_step_id"] for r in rows] == list(step_ids)
    assert [(r["calculation_id"], r["step_index"], r["n_steps"], r["is_final_step"]) for r in rows] == [
        ("mp-aa", 0, 3, False), ("mp-aa", 1, 3, False), ("mp-aa", 2, 3, True), ("mp-ab", 0, 1, True)]
    for r in rows:
        assert r["initial_structure_id"] == structures[(r["calculation_id"], "initial")]
        assert r["relaxed_structure_id"] == structures[(r["calculation_id"], "relaxed")]
        assert r["source_record_id"] == r["calculation_id"] and r["n_sites"] == 2 and r["error"] is None
    first = rows[0]
    assert (first["energy_ev"], first["energy_per_atom_ev"], first["final_energy_per_atom_ev"]) == (-7.0, -3.5, -3.8)
    assert first["max_force_ev_per_a"] == pytest.approx(0.4) and first["species"] == ["Cs", "Cl"]
    # arrays come back as arrays, not JSON text
    forces = np.asarray(table["forces_ev_per_a"][0].values.flatten()).reshape(-1, 3)
    np.testing.assert_array_equal(forces, [[0.4, 0.0, 0.0], [-0.4, 0.0, 0.0]])
    np.testing.assert_array_equal(np.array(first["stress_kbar"]), [[4.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0]])
    np.testing.assert_allclose(np.array(first["lattice"]), np.eye(3) * A * 1.05)
    np.testing.assert_allclose(np.array(first["frac_coords"]), [[0, 0, 0], [0.52, 0.5, 0.5]])


def test_duckdb_view_gives_structure_energy_pairs(duckdb_url, tmp_path):
    engine = db.create_engine(duckdb_url)
    db.upgrade(engine)
    ingest(mp, [write_tasks(tmp_path / "tasks.json.gz", [relaxation("mp-aa"), static("mp-ab")])], engine=engine)
    build_feature_set("trajectories", engine=engine, store=FeatureStore(tmp_path / "features", engine),
                      use_dask=False)
    with engine.connect() as conn:
        pairs = conn.execute(sa.text(  # the example in featurestore/trajectories.py
            "SELECT sc.structure_id, sc.kind, sc.formula, sc.volume_a3, t.final_energy_per_atom_ev "
            "FROM features_trajectories t JOIN structures_current sc ON sc.structure_id = t.initial_structure_id "
            "WHERE t.is_final_step ORDER BY t.calculation_id")).all()
        arrays = conn.execute(sa.text(
            "SELECT t.forces_ev_per_a[1][1], len(t.frac_coords), t.lattice[3][3], t.species[2] "
            "FROM features_trajectories t WHERE t.calculation_id = 'mp-aa' AND t.step_index = 0")).one()
    assert [(p.kind, p.formula, p.final_energy_per_atom_ev) for p in pairs] == [("initial", "CsCl", -3.8),
                                                                                ("initial", "CsCl", -3.805)]
    assert pairs[0].volume_a3 == pytest.approx((A * 1.05) ** 3)  # the pre-relaxation cell, paired with E_relaxed
    assert tuple(arrays) == (0.4, 2, pytest.approx(A * 1.05), "Cl")


def test_rebuild_computes_only_the_changed_calculation(duckdb_url, tmp_path):
    engine = db.create_engine(duckdb_url)
    db.upgrade(engine)
    ingest(mp, [write_tasks(tmp_path / "r1.json.gz", [relaxation("mp-aa"), static("mp-ab")])], engine=engine)
    store = FeatureStore(tmp_path / "features", engine)
    first = build_feature_set("trajectories", engine=engine, store=store, use_dask=False)
    ingest(mp, [write_tasks(tmp_path / "r2.json.gz", [relaxation("mp-aa", (-7.1, -7.4, -7.7)), static("mp-ab")])],
           engine=engine)
    second = build_feature_set("trajectories", engine=engine, store=store, use_dask=False)
    assert second.version == 2 and second.parameters["computed_rows"] == 3 and second.row_count == 4
    table = store.read(second).sort_by("relaxation_step_id").to_pylist()
    assert [r["energy_ev"] for r in table if r["calculation_id"] == "mp-aa"] == [-7.1, -7.4, -7.7]
    assert store.read(first).num_rows == 4  # the old version stays readable


def test_chunk_function_pickles_by_reference_for_dask_workers():
    import pickle

    from matlake.featurestore.builders import definition

    compute = definition("trajectories").compute
    assert pickle.loads(pickle.dumps(compute)) is compute and compute.__module__.endswith("featurestore.trajectories")


def test_a_malformed_array_is_an_error_on_the_row_not_a_failed_build():
    from matlake.featurestore.trajectories import trajectory_chunk

    good = [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]
    lattice = json.dumps([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]])
    row = (7, 1, "mp-1", "mp-1", None, None, 0, 1, 0, -2.0, -1.0, -1.0, json.dumps([[0.1, 0.0]]), None, lattice,
           json.dumps(["Cs", "Cl"]), json.dumps(good))
    [out] = trajectory_chunk([row]).to_pylist()
    assert out["forces_ev_per_a"] is None and out["stress_kbar"] is None and "forces_ev_per_a has shape" in out["error"]
    assert out["frac_coords"] == good and out["max_force_ev_per_a"] is None


@pytest.mark.shared_data
def test_shared_task_documents(duckdb_url, tmp_path):
    path = shared_data("mp/emmet_tasks_Li_Fe_V.json.gz")
    engine = db.create_engine(duckdb_url)
    db.upgrade(engine)
    [s] = ingest(mp, [path], engine=engine)
    store = FeatureStore(tmp_path / "features", engine)
    info = build_feature_set("trajectories", engine=engine, store=store, use_dask=False)
    table = store.read(info)
    with engine.connect() as conn:
        n_steps = conn.execute(sa.text("SELECT count(*) FROM relaxation_step WHERE valid_to_run_id IS NULL")).scalar()
        outputs = dict(conn.execute(sa.text(
            "SELECT st.id, p.value FROM property_value p JOIN structure st ON st.id = p.structure_id "
            "WHERE p.property = 'uncorrected_energy' AND p.valid_to_run_id IS NULL")).tuples().all())
    assert s.n_inserted > 0 and table.num_rows == n_steps > 0
    rows = table.to_pylist()
    assert all(r["error"] is None and r["initial_structure_id"] and r["relaxed_structure_id"] for r in rows)
    assert all(len(r["forces_ev_per_a"]) == r["n_sites"] == len(r["species"]) for r in rows)
    finals = [r for r in rows if r["is_final_step"]]
    # the last ionic step is the task's output energy (see ingest/mp/steps.py)
    matched = [r for r in finals if r["relaxed_structure_id"] in outputs]
    assert matched and all(r["energy_ev"] == pytest.approx(outputs[r["relaxed_structure_id"]], abs=1e-6)
                           for r in matched)
