"""Point in time: a feature set built from snapshot S, joined with labels as of S, sees nothing ingested after S."""

from __future__ import annotations

import pytest

from matlake import db
from matlake.errors import InputError
from matlake.featurestore.builders import build_feature_set
from matlake.featurestore.store import FeatureStore
from matlake.ingest.framework import ingest
from matlake.modelling.data import LabelQuery, join_features, load_labels
from tests.ingest import toy_source

RELEASE_1 = [("t-1", "Fe2O3", "-1.5"), ("t-2", "NaCl", "-2.1"), ("t-3", "LiFePO4", "-2.5"), ("t-4", "SiO2", "-3.0")]
RELEASE_2 = [("t-1", "Fe2O3", "-1.7"), *RELEASE_1[1:], ("t-5", "CaTiO3", "-3.4")]  # one label changed, one added


def test_features_of_snapshot_join_labels_as_of_that_snapshot(any_url, tmp_path):
    engine = db.create_engine(any_url)
    db.upgrade(engine)
    [r1] = ingest(toy_source, [toy_source.write(tmp_path / "r1.csv", RELEASE_1)], engine=engine, release="1")
    store = FeatureStore(tmp_path / "features", engine)
    v1 = build_feature_set("magpie", engine=engine, store=store, use_dask=False)
    [r2] = ingest(toy_source, [toy_source.write(tmp_path / "r2.csv", RELEASE_2)], engine=engine, release="2")
    assert (r2.n_updated, r2.n_inserted) == (1, 1)
    v2 = build_feature_set("magpie", engine=engine, store=store, use_dask=False)
    s1, s2 = r1.run_id, r2.run_id
    assert (v1.snapshot_run_id, v2.snapshot_run_id) == (s1, s2) and v2.row_count == 5

    assert store.as_of("magpie", s1) == v1 and store.as_of("magpie", s2) == v2
    assert store.as_of("magpie", s1 - 1) is None and store.as_of("magpie", s1, partition="toy") is None

    query = LabelQuery(source="toy", property="formation_energy_per_atom", as_of_run=s1)
    labels = load_labels(engine, query)
    features = store.read(store.as_of("magpie", s1))
    x, names = join_features(labels, features)
    assert x.shape == (4, len(names)) == (4, 145)
    assert dict(zip(labels.column("formula").to_pylist(), labels.column("value").to_pylist())) == {
        "Fe2O3": -1.5, "NaCl": -2.1, "LiFePO4": -2.5, "SiO2": -3.0}
    assert set(features.column("composition_id").to_pylist()) == set(labels.column("composition_id").to_pylist())

    latest = load_labels(engine, LabelQuery(source="toy", property="formation_energy_per_atom"))
    assert dict(zip(latest.column("formula").to_pylist(), latest.column("value").to_pylist()))["Fe2O3"] == -1.7
    with pytest.raises(InputError, match="no features"):  # release-2 labels need the release-2 features
        join_features(latest, features)
    assert join_features(latest, store.read(store.as_of("magpie", s2)))[0].shape[0] == 5
