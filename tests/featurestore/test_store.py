"""The feature store: Parquet on disk, registry rows in SQL, DuckDB views, incremental rebuilds, Dask equality."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from matlake import db
from matlake.featurestore.builders import build_feature_set
from matlake.featurestore.magpie import magpie_features
from matlake.featurestore.store import FeatureStore, sha256_file
from matlake.ingest.formulas import parse_formula
from matlake.ingest.framework import ingest
from tests.ingest import toy_source

ROWS = [("t-1", "Fe2O3", "-1.5"), ("t-2", "NaCl", "-2.1"), ("t-3", "LiFePO4", "-2.5"), ("t-4", "SiO2", "-3.0"),
        ("t-5", "Hg0.7Cd0.3Te", "-0.2"), ("t-6", "MgAl2O4", "-3.1")]


@pytest.fixture
def store(any_url, tmp_path):
    engine = db.create_engine(any_url)
    db.upgrade(engine)
    ingest(toy_source, [toy_source.write(tmp_path / "v1.csv", ROWS)], engine=engine)
    return FeatureStore(tmp_path / "features", engine)


def _compositions(store: FeatureStore) -> dict[int, str]:
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT composition_id, formula FROM materials_current")).tuples().all())


def test_build_registers_parquet_with_checksums(store):
    info = build_feature_set("magpie", engine=store.engine, store=store, use_dask=False)
    assert (info.version, info.partition, info.row_count) == (1, "all", 6)
    [f] = info.files
    path = Path(f["path"])
    assert path.is_relative_to(store.root / "magpie" / "v1" / "all") and path.suffix == ".parquet"
    assert sha256_file(path) == f["sha256"] and f["rows"] == 6
    assert pq.ParquetFile(path).metadata.row_group(0).column(1).compression == "ZSTD"
    assert len(info.column_schema) == 146 and info.column_schema["composition_id"] == "int64"
    with store.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT snapshot_run_id, row_count, code_version FROM feature_set")).one()
        last_run = conn.execute(sa.text("SELECT max(id) FROM ingest_run")).scalar()
    assert row.snapshot_run_id == last_run and row.row_count == 6 and row.code_version


def test_stored_values_equal_direct_featurisation(store):
    info = build_feature_set("magpie", engine=store.engine, store=store, use_dask=False)
    table = store.read(info, verify=True).sort_by("composition_id")
    formulas = _compositions(store)
    expected = magpie_features([parse_formula(formulas[k]).amounts for k in table.column("composition_id").to_pylist()])
    got = np.column_stack([table.column(i).to_numpy() for i in range(1, table.num_columns)])
    np.testing.assert_array_equal(got, expected)


def test_duckdb_view_joins_features_to_tables(duckdb_url, tmp_path):
    engine = db.create_engine(duckdb_url)
    db.upgrade(engine)
    ingest(toy_source, [toy_source.write(tmp_path / "v1.csv", ROWS)], engine=engine)
    store = FeatureStore(tmp_path / "features", engine)
    build_feature_set("magpie", engine=engine, store=store, use_dask=False)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            'SELECT p.formula, f."MagpieData mean Number" FROM properties_current p '
            "JOIN features_magpie f ON f.composition_id = (SELECT id FROM composition c WHERE c.formula = p.formula) "
            "ORDER BY p.formula"
        )).all()
    assert len(rows) == 6
    assert dict(rows)["NaCl"] == pytest.approx((11 + 17) / 2)


def test_rebuild_computes_only_changed_inputs(store, tmp_path):
    first = build_feature_set("magpie", engine=store.engine, store=store, use_dask=False)
    same = build_feature_set("magpie", engine=store.engine, store=store, use_dask=False)
    assert same == first  # nothing changed: the registered version is returned, no new one is written
    ingest(toy_source, [toy_source.write(tmp_path / "more.csv", [("t-7", "CaTiO3", "-3.4")])], engine=store.engine,
           mode="partial")
    grown = build_feature_set("magpie", engine=store.engine, store=store, use_dask=False)
    assert grown.parameters["computed_rows"] == 1 and grown.row_count == 7 and grown.version == 2
    assert set(first.paths) < set(grown.paths)
    ingest(toy_source, [toy_source.write(tmp_path / "v2.csv", ROWS[:4])], engine=store.engine)  # full: withdraws 3
    shrunk = build_feature_set("magpie", engine=store.engine, store=store, use_dask=False)
    assert shrunk.parameters["computed_rows"] == 0 and shrunk.row_count == 4
    assert sorted(store.read(shrunk).column("composition_id").to_pylist()) == sorted(_compositions(store))
    assert store.read(first).num_rows == 6  # old versions stay readable


def test_unknown_feature_set_and_source_are_user_errors(store):
    from matlake.errors import InputError

    with pytest.raises(InputError, match="unknown feature set"):
        build_feature_set("nope", engine=store.engine, store=store)
    with pytest.raises(InputError, match="no source named"):
        build_feature_set("magpie", engine=store.engine, store=store, source="atlantis")


def test_local_cluster_build_equals_single_process(duckdb_url, tmp_path):
    engine = db.create_engine(duckdb_url)
    db.upgrade(engine)
    ingest(toy_source, [toy_source.write(tmp_path / "v1.csv", ROWS)], engine=engine)
    single = FeatureStore(tmp_path / "single", engine)
    a = build_feature_set("magpie", engine=engine, store=single, use_dask=False, chunk_size=2)
    parallel = FeatureStore(tmp_path / "parallel", engine)
    b = build_feature_set("magpie", engine=engine, store=parallel, n_workers=2, chunk_size=2)
    assert len(b.files) == 3
    assert single.read(a).equals(parallel.read(b))


def test_local_cluster_workers_do_not_sample_profiles() -> None:
    import dask

    from matlake.featurestore.runner import dask_client

    with dask_client(n_workers=1) as client:
        assert list(client.run(lambda: dask.config.get("distributed.worker.profile.enabled")).values()) == [False]
    assert dask.config.get("distributed.worker.profile.enabled") is True  # this process keeps its setting


def _wait_for_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def test_existing_scheduler_and_worker_processes(duckdb_url, tmp_path):
    """A real `dask scheduler` and `dask worker` started as separate processes, reached by address."""
    from tests.conftest import _free_port

    dask = shutil.which("dask", path=os.path.dirname(sys.executable))
    if dask is None:
        pytest.skip("the dask command line is not installed beside this Python")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                  "--dashboard-address", ":0", "--no-show"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        _wait_for_port(port)
        worker = subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-dashboard",
                                   "--local-directory", str(tmp_path / "worker")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        engine = db.create_engine(duckdb_url)
        db.upgrade(engine)
        ingest(toy_source, [toy_source.write(tmp_path / "v1.csv", ROWS)], engine=engine)
        single = FeatureStore(tmp_path / "single", engine)
        a = build_feature_set("magpie", engine=engine, store=single, use_dask=False, chunk_size=4)
        remote = FeatureStore(tmp_path / "remote", engine)
        b = build_feature_set("magpie", engine=engine, store=remote, scheduler=address, chunk_size=4)
        assert single.read(a).equals(remote.read(b))
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
