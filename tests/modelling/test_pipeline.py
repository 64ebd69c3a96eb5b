"""Labels -> stored split -> RF baseline -> registry -> tracked predictions, on DuckDB and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from matlake import db
from matlake.errors import InputError
from matlake.featurestore.builders import build_feature_set
from matlake.featurestore.store import FeatureStore
from matlake.ingest.framework import ingest
from matlake.modelling.baselines import train_random_forest
from matlake.modelling.data import LabelQuery, load_labels
from matlake.modelling.models.forest import ForestPredictor, export_forest
from matlake.modelling.predict import predict
from matlake.modelling.registry import WeightsIntegrityError, get_model, load_tensors
from matlake.modelling.splits import SplitLeakError, assert_disjoint, assign_parts, create_split, load_split
from tests.ingest import toy_source

FORMULAS = ["Fe2O3", "FeO", "Fe3O4", "NaCl", "KCl", "LiF", "MgO", "CaO", "SrO", "BaO", "Al2O3", "SiO2", "TiO2",
            "ZnO", "CuO", "NiO", "CoO", "MnO", "Cr2O3", "V2O5", "LiCl", "NaF", "KBr", "CsI", "GaN", "AlN", "InP",
            "GaAs", "ZnS", "CdTe"]


@pytest.fixture
def engine(any_url, tmp_path, monkeypatch):
    monkeypatch.setenv("MATLAKE_MODELS_DIR", str(tmp_path / "models"))
    from matlake.config import get_settings

    get_settings.cache_clear()
    engine = db.create_engine(any_url)
    db.upgrade(engine)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(90):  # three measurements of each composition: a grouped split must keep them together
        f = FORMULAS[i % len(FORMULAS)]
        rows.append((f"t-{i}", f, f"{-1 - 0.1 * (i % len(FORMULAS)) + rng.normal() * 0.01:.4f}"))
    ingest(toy_source, [toy_source.write(tmp_path / "rows.csv", rows)], engine=engine)
    return engine


QUERY = LabelQuery(source="toy", property="formation_energy_per_atom")


def test_grouped_split_keeps_compositions_together(engine):
    labels = load_labels(engine, QUERY)
    split = create_split(engine, "by-composition", labels, strategy="composition", seed=1)
    assert_disjoint(split, ["train", "val", "test"])
    seen = {}
    for part, ids in split.parts.items():
        for m in ids:
            assert seen.setdefault(split.groups[m], part) == part
    assert sum(len(v) for v in split.parts.values()) == 90
    again = load_split(engine, "by-composition")
    assert again.parts == split.parts


def test_leaky_split_is_refused(engine):
    from matlake.modelling.splits import Split

    labels = load_labels(engine, QUERY)
    random = create_split(engine, "random", labels, strategy="random", seed=0)
    formula_of = dict(zip(labels.column("material_id").to_pylist(), labels.column("formula").to_pylist()))
    # the random split's parts judged as a composition split: rows of one composition sit in several parts
    judged = Split(random.id, random.name, "composition", random.seed, random.parts, formula_of)
    with pytest.raises(SplitLeakError, match="is in both"):
        assert_disjoint(judged, ["train", "val", "test"])


def test_split_names_are_unique(engine):
    labels = load_labels(engine, QUERY)
    create_split(engine, "once", labels)
    with pytest.raises(InputError, match="exists already"):
        create_split(engine, "once", labels)


def test_kfold_matches_scikit_learn():
    from sklearn.model_selection import KFold

    keys = [str(i) for i in range(23)]
    parts = assign_parts(keys, "kfold", seed=18012019, n_folds=5)
    for k, (_, test) in enumerate(KFold(5, shuffle=True, random_state=18012019).split(keys)):
        assert sorted(i for i, p in enumerate(parts) if p == f"fold_{k}") == sorted(test.tolist())


def test_forest_arrays_predict_like_scikit_learn():
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 12))
    y = X[:, 0] - 2 * X[:, 3] ** 2 + rng.normal(size=300) * 0.1
    forest = RandomForestRegressor(n_estimators=30, max_features=0.25, random_state=0, n_jobs=1).fit(X, y)
    X_new = rng.normal(size=(200, 12))
    mean, spread = ForestPredictor.from_tensors(export_forest(forest)).predict(X_new)
    np.testing.assert_allclose(mean, forest.predict(X_new), rtol=0, atol=1e-12)
    per_tree = np.stack([t.predict(X_new.astype(np.float32)) for t in forest.estimators_], axis=1)
    np.testing.assert_allclose(spread, per_tree.std(axis=1), rtol=1e-12)


def test_rf_baseline_end_to_end(engine, tmp_path):
    store = FeatureStore(tmp_path / "features", engine)
    build_feature_set("magpie", engine=engine, store=store, use_dask=False)
    labels = load_labels(engine, QUERY)
    split = create_split(engine, "grouped", labels, strategy="composition", seed=0)
    result = train_random_forest(engine, QUERY, split, name="rf-toy", store=store, n_estimators=50)
    model = get_model(engine, "rf-toy")
    assert model.version == 1 and model.split_id == split.id and model.snapshot_run_id == 1
    assert model.feature_sets == [{"name": "magpie", "version": 1, "partition": "all"}]
    assert set(result.metrics) == {"train", "val", "test"}
    assert result.metrics["train"]["mae"] < result.metrics["test"]["mae"]

    run = predict(engine, "rf-toy", "split:grouped:test", device="cpu")
    assert not run.reused and run.n_predictions == len(split.material_ids("test"))
    assert predict(engine, "rf-toy", "split:grouped:test", device="cpu").reused
    assert not predict(engine, "rf-toy", "split:grouped:test", device="cpu", force=True).reused
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT p.material_id, p.mean, p.std_total, p.model_name, pc.value FROM predictions_latest p "
            "JOIN properties_current pc ON pc.material_id = p.material_id ORDER BY p.material_id"
        )).all()
        n_runs = conn.execute(sa.text("SELECT count(*) FROM prediction_run")).scalar()
    assert n_runs == 2 and len(rows) == run.n_predictions  # the latest run per material only
    mae = np.mean([abs(r.mean - r.value) for r in rows])
    assert mae == pytest.approx(result.metrics["test"]["mae"], rel=1e-9)
    assert all(r.model_name == "rf-toy" and r.std_total >= 0 for r in rows)
    # the evaluation figures' numbers are stored as metric rows, equal to those recomputed from the predictions
    from matlake.modelling.evaluation import uncertainty_metrics

    with engine.connect() as conn:
        stored = dict(conn.execute(sa.text(
            "SELECT mm.metric, mm.value FROM model_metric mm JOIN model m ON m.id = mm.model_id "
            "WHERE m.name = 'rf-toy' AND mm.part = 'test' AND mm.member IS NULL")).all())
    recomputed = uncertainty_metrics([r.value for r in rows], [r.mean for r in rows], [r.std_total for r in rows])
    assert {"confidence_gain", "spearman_abs_error_std", "qq_slope", "coverage_1sigma"} <= set(stored)
    for key in ("confidence_gain", "qq_slope", "coverage_1sigma", "coverage_2sigma"):
        assert stored[key] == pytest.approx(recomputed[key], rel=1e-9, abs=1e-12), key


def test_tampered_weights_are_refused(engine, tmp_path):
    store = FeatureStore(tmp_path / "features", engine)
    build_feature_set("magpie", engine=engine, store=store, use_dask=False)
    split = create_split(engine, "s", load_labels(engine, QUERY))
    train_random_forest(engine, QUERY, split, name="rf-toy", store=store, n_estimators=5)
    model = get_model(engine, "rf-toy:v1")
    with open(model.weights_path, "r+b") as fh:
        fh.seek(-8, 2)
        fh.write(b"\x00" * 8)
    with pytest.raises(WeightsIntegrityError, match="do not match the registry"):
        load_tensors(model)


def test_bad_selections_are_clear_errors(engine, tmp_path):
    store = FeatureStore(tmp_path / "features", engine)
    build_feature_set("magpie", engine=engine, store=store, use_dask=False)
    split = create_split(engine, "s", load_labels(engine, QUERY))
    train_random_forest(engine, QUERY, split, name="rf-toy", store=store, n_estimators=5)
    with pytest.raises(InputError, match="use source:NAME"):
        predict(engine, "rf-toy", "everything")
    with pytest.raises(InputError, match="matched nothing"):
        predict(engine, "rf-toy", "source:atlantis")
    with pytest.raises(InputError, match="no registered model"):
        predict(engine, "nope", "source:toy")
    run = predict(engine, "rf-toy", "sql:SELECT id AS composition_id FROM composition WHERE formula = 'NaCl'")
    assert run.n_predictions == 1
