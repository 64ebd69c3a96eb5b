"""Wren end to end: structures -> protostructure features -> `matlake train wren` -> registry -> `matlake predict`
on stored structures and on hand-typed labels, with excluded materials counted; Dask members equal in-process ones.

The source below is a tiny JSON file of pymatgen-built polymorphs (made-up energies), one material that has no
structure and one whose structure is disordered (no Wyckoff representation), loaded through the real framework.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from matlake import db
from matlake.ingest.framework import SourceInfo, ingest
from matlake.ingest.records import MaterialRecord, PropertyData, RawRecord
from matlake.ingest.structures import structure_data
from matlake.modelling.train import TrainConfig, train_member
from tests.recipes import recipe_blocks

info = SourceInfo(name="wrentoy", title="Wren test polymorphs", licence="CC0", citation="none")

PROTOTYPES = {  # space group symbol, cubic a (A), sites of A and B
    "rocksalt": ("Fm-3m", 5.6, [[0, 0, 0]], [[0.5, 0.5, 0.5]]),
    "cscl": ("Pm-3m", 3.4, [[0, 0, 0]], [[0.5, 0.5, 0.5]]),
    "zincblende": ("F-43m", 5.9, [[0, 0, 0]], [[0.25, 0.25, 0.25]]),
}
PAIRS = [("Na", "Cl"), ("K", "Cl"), ("Li", "F"), ("Mg", "O"), ("Ca", "O"), ("Zn", "S"), ("Cd", "Se"),
         ("Ga", "N"), ("Na", "Br"), ("Ba", "S")]
OFFSET = {"rocksalt": 0.0, "cscl": 0.4, "zincblende": 0.2}


def dataset(path: Path) -> str:
    return "polymorphs"


def read(path: Path):
    for i, row in enumerate(json.loads(path.read_text())):
        yield RawRecord(file=str(path), position=i, payload=row, key=row["id"], excerpt=row["id"])


def normalise(raw: RawRecord) -> MaterialRecord:
    from pymatgen.core import Structure

    row = raw.payload
    structures = [structure_data(Structure.from_dict(row["structure"]), "relaxed")] if row["structure"] else []
    return MaterialRecord(record_id=row["id"], formula=row["formula"], structures=structures, properties=[
        PropertyData(property="formation_energy_per_atom", value=row["energy"], unit="eV/atom", method="PBE",
                     structure_index=0 if structures else None)])


def write_source(path: Path) -> Path:
    from pymatgen.core import Lattice, Structure

    rows = []
    for k, (a, b) in enumerate(PAIRS):
        for name, (group, lattice, sites_a, sites_b) in PROTOTYPES.items():
            s = Structure.from_spacegroup(group, Lattice.cubic(lattice), [a, b], sites_a + sites_b)
            rows.append({"id": f"{a}{b}-{name}", "formula": f"{a}{b}", "energy": -1.0 - 0.1 * k + OFFSET[name],
                         "structure": s.as_dict()})
    rows.append({"id": "no-structure", "formula": "CsI", "energy": -1.5, "structure": None})
    disordered = Structure(Lattice.cubic(4.0), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]])
    rows.append({"id": "disordered", "formula": "CuAu", "energy": -0.2, "structure": disordered.as_dict()})
    path.write_text(json.dumps(rows))
    return path


def _load(url: str, tmp_path: Path, monkeypatch) -> str:
    """A database with the polymorph source and its protostructure features; the CLI sees the same settings."""
    monkeypatch.setenv("MATLAKE_DATABASE_URL", url)
    from matlake.config import get_settings
    from matlake.featurestore.builders import build_feature_set
    from matlake.featurestore.store import FeatureStore

    get_settings.cache_clear()
    engine = db.create_engine(url)
    db.upgrade(engine)
    ingest(sys.modules[__name__], [write_source(tmp_path / "polymorphs.json")], engine=engine)
    store = FeatureStore(get_settings().resolved_feature_store, engine)
    build_feature_set("protostructure", engine=engine, store=store, source="wrentoy", use_dask=False)
    engine.dispose()
    return url


@pytest.fixture
def loaded(any_url, tmp_path, monkeypatch) -> str:
    return _load(any_url, tmp_path, monkeypatch)


@pytest.fixture
def loaded_duckdb(duckdb_url, tmp_path, monkeypatch) -> str:
    return _load(duckdb_url, tmp_path, monkeypatch)


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "matlake.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_train_register_predict_through_the_cli(loaded, tmp_path):
    trained = cli(["train", "wren", "--source", "wrentoy", "--property", "formation_energy_per_atom", "--split",
                   "by-formula", "--strategy", "composition", "--epochs", "3", "--seed", "1", "--max-wyckoff", "16"],
                  tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "registered wren-wrentoy-formation_energy_per_atom v1" in trained.stdout
    assert "excluded" in trained.stdout and "1 no structure" in trained.stdout
    assert "1 invalid protostructure" in trained.stdout

    engine = db.create_engine(loaded)
    with engine.connect() as conn:
        model = conn.execute(sa.text("SELECT id, architecture, hyperparameters, feature_sets FROM model")).one()
        excluded = dict(conn.execute(sa.text(
            "SELECT metric, sum(value) FROM model_metric WHERE model_id = :m AND metric LIKE 'excluded_%' "
            "GROUP BY metric"), {"m": model.id}).all())
    assert model.architecture == "wren"
    assert excluded == {"excluded_no_structure": 1, "excluded_no_protostructure_row": 0,
                        "excluded_invalid_protostructure": 1, "excluded_label_not_usable": 0,
                        "excluded_too_many_wyckoff_positions": 0}
    feature_sets = json.loads(model.feature_sets) if isinstance(model.feature_sets, str) else model.feature_sets
    assert {f["name"] for f in feature_sets} >= {"protostructure", "wyckoff_embedding"}
    hparams = json.loads(model.hyperparameters) if isinstance(model.hyperparameters, str) else model.hyperparameters
    assert hparams["train"]["optimiser"] == "adamw" and hparams["out_hidden"] == [256, 256, 128, 64]
    assert hparams["max_wyckoff"] == 16

    on_structures = cli(["predict", "wren-wrentoy-formation_energy_per_atom", "--on", "source:wrentoy",
                         "--device", "cpu"], tmp_path)
    assert on_structures.returncode == 0, on_structures.stderr
    assert f"{3 * len(PAIRS)} predictions" in on_structures.stdout
    assert "excluded 1 no structure, 1 invalid protostructure" in on_structures.stdout

    labels_file = tmp_path / "candidates.txt"
    labels_file.write_text("# hypothetical NaCl polymorphs\nAB_cF8_225_a_b:Cl-Na\nAB_cF8_216_a_c:Cl-Na\n")
    on_labels = cli(["predict", "wren-wrentoy-formation_energy_per_atom", "--labels", str(labels_file),
                     "--device", "cpu"], tmp_path)
    assert on_labels.returncode == 0, on_labels.stderr
    assert "2 predictions" in on_labels.stdout

    with engine.connect() as conn:
        stored = conn.execute(sa.text(
            "SELECT material_id, structure_id, protostructure, formula, mean FROM predictions_latest "
            "WHERE architecture = 'wren' ORDER BY prediction_id")).all()
        # SQL can ask which polymorph of a composition the model ranks lowest: the recipe in docs/recipes.md
        [recipe] = recipe_blocks(needs="wren predictions")
        lowest = conn.execute(sa.text(recipe.strip().rstrip(";"))).all()
    engine.dispose()
    from_structures = [r for r in stored if r.material_id is not None]
    hypothetical = [r for r in stored if r.material_id is None]
    assert len(from_structures) == 3 * len(PAIRS)
    assert all(r.structure_id is not None and r.protostructure for r in from_structures)
    nacl = {r.protostructure.split("_")[3] + "@" + r.protostructure.split("_")[2]: r.mean for r in from_structures
            if r.protostructure.endswith(":Cl-Na")}
    assert len(nacl) == 3 and len(set(np.round(list(nacl.values()), 8))) == 3  # polymorphs told apart
    assert [r.protostructure for r in hypothetical] == ["AB_cF8_225_a_b:Cl-Na", "AB_cF8_216_a_c:Cl-Na"]
    # no structure behind them, but the composition is known, so they sit beside the stored NaCl polymorphs
    assert all(r.structure_id is None and r.formula == "NaCl" for r in hypothetical)
    stored_rocksalt = next(r.mean for r in from_structures if r.protostructure.startswith("AB_cF8_225")
                           and r.protostructure.endswith(":Cl-Na"))
    assert hypothetical[0].mean == pytest.approx(stored_rocksalt, abs=1e-6)  # same label, float32 batches
    assert len(lowest) == len(PAIRS) and all(r.protostructure for r in lowest)
    for row in lowest:
        candidates = sorted(r.mean for r in stored if r.formula == row.formula)
        assert row.n_candidates == len(candidates) > 1
        assert float(row.predicted) == pytest.approx(candidates[0], abs=1e-4)
        assert float(row.margin_to_next) == pytest.approx(candidates[1] - candidates[0], abs=2e-4)


def test_cli_refuses_bad_labels_in_one_line(loaded_duckdb, tmp_path):
    trained = cli(["train", "wren", "--source", "wrentoy", "--property", "formation_energy_per_atom", "--split",
                   "by-protostructure", "--strategy", "protostructure", "--epochs", "1", "--name", "w"], tmp_path)
    assert trained.returncode == 0, trained.stderr
    engine = db.create_engine(loaded_duckdb)
    with engine.connect() as conn:
        keys = dict(conn.execute(sa.text("SELECT material_id, group_key FROM split_member")).all())
    engine.dispose()
    assert len(keys) == 3 * len(PAIRS) + 2 and "no-structure" in keys.values()
    assert sum(k.startswith("AB_cF8_225_a_b:") for k in keys.values()) == len(PAIRS)  # canonical labels
    bad = cli(["predict", "w", "--labels", "AB_cF8_225_a_b:Cl-Na,AB_cF8_225_a_c:Cl-Na", "--device", "cpu"], tmp_path)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr + bad.stdout
    assert "'AB_cF8_225_a_c:Cl-Na': the Wyckoff multiplicities give AB2, the formula says AB" in bad.stderr
    both = cli(["predict", "w", "--labels", "AB_cF8_225_a_b:Cl-Na", "--on", "source:wrentoy"], tmp_path)
    assert both.returncode != 0 and "exactly one of --on" in both.stderr


def test_cli_hyper_parameters_reach_the_model_and_bad_ones_are_one_line_errors(loaded_duckdb, tmp_path):
    base = ["train", "wren", "--source", "wrentoy", "--property", "formation_energy_per_atom", "--split", "s",
            "--epochs", "1", "--name", "w"]
    trained = cli([*base, "--hparams", '{"sym_dropout": 0.5, "elem_fea_len": 24, "out_hidden": [64, 32]}'], tmp_path)
    assert trained.returncode == 0, trained.stderr
    engine = db.create_engine(loaded_duckdb)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT hyperparameters FROM model WHERE name = 'w'")).scalar_one()
    engine.dispose()
    hparams = json.loads(stored) if isinstance(stored, str) else stored
    assert (hparams["sym_dropout"], hparams["elem_fea_len"], hparams["out_hidden"]) == (0.5, 24, [64, 32])
    assert hparams["train"]["hparams"]["sym_dropout"] == 0.5
    for text, message in [('{"sym_dropot": 0.5}', "unexpected keyword argument 'sym_dropot'"),
                          ('{"sym_dropout": 1.0}', "sym_dropout must be in [0, 1)"),
                          ("sym_dropout=0.5", "--hparams is not valid JSON")]:
        bad = cli([*base, "--hparams", text], tmp_path)
        assert bad.returncode != 0 and "Traceback" not in bad.stderr + bad.stdout, bad.stderr
        assert message in bad.stderr, bad.stderr


def test_the_thesis_cleaning_rule_excludes_and_counts(loaded_duckdb):
    from matlake.errors import InputError
    from matlake.modelling.data import LabelQuery, load_labels
    from matlake.modelling.ensemble import train_wren_ensemble
    from matlake.modelling.splits import create_split

    engine = db.create_engine(loaded_duckdb)
    query = LabelQuery(source="wrentoy", property="formation_energy_per_atom")
    split = create_split(engine, "s", load_labels(engine, query), seed=0)
    config = TrainConfig(epochs=1, batch_size=8, threads=1, device="cpu", hparams={"out_hidden": [16]})
    # every polymorph here has two Wyckoff positions: a limit of 2 leaves nothing, and says why
    with pytest.raises(InputError, match="'too_many_wyckoff_positions': 2[0-9]") as info:
        train_wren_ensemble(engine, query, split, name="w2", config=config, use_dask=False, max_wyckoff=2)
    assert "'invalid_protostructure': 1" in str(info.value)
    kept = train_wren_ensemble(engine, query, split, name="w3", config=config, use_dask=False, max_wyckoff=3)
    assert kept.model.hyperparameters["max_wyckoff"] == 3
    assert sum(c["too_many_wyckoff_positions"] for c in kept.model.hyperparameters["excluded"].values()) == 0
    engine.dispose()


def test_dask_members_equal_in_process_members():
    labels = [f"{p}:{s}" for p in ("AB_cF8_225_a_b", "AB_cP2_221_a_b", "AB_cF8_216_a_c")
              for s in ("Cl-Na", "Cl-K", "F-Li", "Mg-O")]
    y = list(np.linspace(-2.0, -0.5, len(labels)))
    config = TrainConfig(epochs=2, batch_size=4, seed=5, threads=1, device="cpu", architecture="wren",
                         hparams={"elem_fea_len": 8, "sym_fea_len": 8, "n_graph": 1, "elem_gate_hidden": 16,
                                  "elem_msg_hidden": 16, "cry_gate_hidden": 16, "cry_msg_hidden": 16,
                                  "out_hidden": [16]})
    from matlake.modelling.ensemble import train_members

    on_dask = train_members(labels, y, labels[:4], y[:4], config, 2, use_dask=True)
    for k, remote in enumerate(on_dask):
        from dataclasses import replace

        local = train_member(labels, y, labels[:4], y[:4], replace(config, seed=config.seed + k))
        assert remote.state.keys() == local.state.keys() and "wyckoff_embedding" in local.state
        for key, value in local.state.items():
            np.testing.assert_allclose(remote.state[key], value, rtol=0, atol=1e-6, err_msg=key)
        assert remote.best_epoch == local.best_epoch
    assert not np.allclose(on_dask[0].state["embed_sym.weight"], on_dask[1].state["embed_sym.weight"])


def test_training_without_the_protostructure_features_says_what_to_build(duckdb_url, tmp_path, monkeypatch):
    from matlake.errors import InputError
    from matlake.modelling.workflows import train

    engine = db.create_engine(duckdb_url)
    db.upgrade(engine)
    ingest(sys.modules[__name__], [write_source(tmp_path / "polymorphs.json")], engine=engine)
    with pytest.raises(InputError, match="run `matlake features build protostructure --source wrentoy` first"):
        train("wren", source="wrentoy", property="formation_energy_per_atom", split_name="s", epochs=1,
              engine=engine)
