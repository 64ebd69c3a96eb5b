"""The random-forest baseline on Magpie features (scikit-learn, 200 trees, max_features 0.25), registered and
predicted like every other model."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from matlake.config import get_settings
from matlake.errors import InputError
from matlake.featurestore.store import FeatureStore

from .data import LabelQuery, as_of_run_of, filter_materials, join_features, load_labels
from .evaluation import uncertainty_metrics
from .metrics import regression_metrics
from .models.forest import ForestPredictor, export_forest
from .registry import RegisteredModel, register_model
from .splits import Split, assert_disjoint

RF_DEFAULTS = {"n_estimators": 200, "max_features": 0.25, "min_samples_leaf": 1}


@dataclass(frozen=True)
class TrainedBaseline:
    model: RegisteredModel
    metrics: dict[str, dict[str, float]]


def load_magpie(store: FeatureStore) -> tuple[pa.Table, list[dict]]:
    """The newest registered Magpie rows of every partition (read once per training), and which versions they are."""
    infos = store.latest_all("magpie")
    if not infos:
        raise InputError("no magpie feature set is registered: run `matlake features build magpie`")
    features = pa.concat_tables([store.read(info) for info in infos])
    return features, [{"name": "magpie", "version": i.version, "partition": i.partition} for i in infos]


def train_random_forest(
    engine: sa.Engine,
    query: LabelQuery,
    split: Split,
    *,
    name: str,
    seed: int = 0,
    train_parts: tuple[str, ...] = ("train",),
    eval_parts: tuple[str, ...] = ("val", "test"),
    store: FeatureStore | None = None,
    n_jobs: int = 2,
    **params,
) -> TrainedBaseline:
    """Fit on ``train_parts`` of the split, evaluate on ``eval_parts``, register weights and metrics."""
    from sklearn.ensemble import RandomForestRegressor

    assert_disjoint(split, [*train_parts, *eval_parts])
    store = store or FeatureStore(get_settings().resolved_feature_store, engine)
    labels = load_labels(engine, query)
    hyper = {**RF_DEFAULTS, **params, "random_state": seed}
    train = filter_materials(labels, [m for p in train_parts for m in split.material_ids(p)])
    features, used = load_magpie(store)
    X, names = join_features(train, features)
    started = time.perf_counter()
    forest = RandomForestRegressor(n_jobs=n_jobs, **hyper).fit(X, train.column("value").to_numpy())
    seconds = time.perf_counter() - started
    tensors = export_forest(forest)
    predictor = ForestPredictor.from_tensors(tensors)
    metrics: dict[str, dict[str, float]] = {}
    for part in (*train_parts, *eval_parts):
        rows = filter_materials(labels, split.material_ids(part))
        if rows.num_rows == 0:
            continue
        mean, std = predictor.predict(join_features(rows, features)[0])
        y = rows.column("value").to_numpy()
        metrics[part] = {**regression_metrics(y, mean, std), **uncertainty_metrics(y, mean, std)}
    model = register_model(
        engine, name=name, architecture="random_forest", hyperparameters={**hyper, "n_features": len(names)},
        tensors=tensors, target_property=query.property, target_source=query.source,
        snapshot_run_id=as_of_run_of(labels), split_id=split.id, feature_sets=used,
        normaliser={"feature_names": names, "label_query": query.as_dict()}, n_members=1,
        metrics=[{"part": p, "metric": k, "value": v} for p, m in metrics.items() for k, v in m.items()
                 if np.isfinite(v)],
        train_seconds=seconds, device="cpu",
    )
    return TrainedBaseline(model, metrics)
