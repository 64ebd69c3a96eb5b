"""Roost members on Dask equal in-process members; ensembles register, predict and carry both uncertainties."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import sqlalchemy as sa
import torch

from matlake import db
from matlake.ingest.framework import ingest
from matlake.modelling.data import LabelQuery, amounts_of, load_labels
from matlake.modelling.ensemble import train_roost_ensemble
from matlake.modelling.predict import predict
from matlake.modelling.registry import get_model
from matlake.modelling.splits import create_split
from matlake.modelling.train import TrainConfig, train_member
from tests.conftest import _free_port
from tests.featurestore.test_store import _wait_for_port
from tests.ingest import toy_source
from tests.modelling.test_pipeline import FORMULAS

SMALL = {"elem_fea_len": 16, "n_graph": 1, "elem_heads": 1, "elem_gate_hidden": 16, "elem_msg_hidden": 16,
         "cry_heads": 1, "cry_gate_hidden": 16, "cry_msg_hidden": 16, "out_hidden": [32, 16]}
TRAIN = [{"Fe": 2, "O": 3}, {"Na": 1, "Cl": 1}, {"Mg": 1, "O": 1}, {"Li": 1, "F": 1}, {"Si": 1, "O": 2},
         {"Ti": 1, "O": 2}, {"Zn": 1, "S": 1}, {"Ga": 1, "N": 1}]
Y = [-1.7, -2.1, -3.0, -3.2, -3.0, -3.3, -1.0, -0.8]


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_member_on_separate_dask_processes_equals_in_process(tmp_path, one_thread):
    dask = shutil.which("dask", path=os.path.dirname(sys.executable))
    if dask is None:
        pytest.skip("the dask command line is not installed beside this Python")
    from distributed import Client

    config = TrainConfig(epochs=3, batch_size=4, seed=7, threads=1, device="cpu", hparams=SMALL)
    local = train_member(TRAIN, Y, TRAIN[:3], Y[:3], config)
    port = _free_port()
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                  "--dashboard-address", ":0", "--no-show"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        _wait_for_port(port)
        worker = subprocess.Popen([dask, "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1", "--no-dashboard",
                                   "--local-directory", str(tmp_path / "w")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with Client(f"tcp://127.0.0.1:{port}", timeout=30) as client:
            client.wait_for_workers(1, timeout=60)
            remote = client.submit(train_member, TRAIN, Y, TRAIN[:3], Y[:3], config, pure=False).result(timeout=120)
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
    assert remote.state.keys() == local.state.keys()
    for key, value in local.state.items():
        np.testing.assert_allclose(remote.state[key], value, rtol=0, atol=1e-6, err_msg=key)
    assert remote.best_epoch == local.best_epoch


def test_different_seeds_give_different_members(one_thread):
    a = train_member(TRAIN, Y, [], [], TrainConfig(epochs=1, batch_size=4, seed=0, threads=1, hparams=SMALL))
    b = train_member(TRAIN, Y, [], [], TrainConfig(epochs=1, batch_size=4, seed=1, threads=1, hparams=SMALL))
    assert not np.allclose(a.state["embed.weight"], b.state["embed.weight"])


@pytest.fixture
def labelled(duckdb_url, tmp_path, monkeypatch):
    monkeypatch.setenv("MATLAKE_MODELS_DIR", str(tmp_path / "models"))
    from matlake.config import get_settings

    get_settings.cache_clear()
    engine = db.create_engine(duckdb_url)
    db.upgrade(engine)
    rows = [(f"t-{i}", f, f"{-0.1 * i:.2f}") for i, f in enumerate(FORMULAS)]
    ingest(toy_source, [toy_source.write(tmp_path / "rows.csv", rows)], engine=engine)
    return engine


def test_ensemble_registers_and_predicts_both_uncertainties(labelled, one_thread):
    engine = labelled
    query = LabelQuery(source="toy", property="formation_energy_per_atom")
    split = create_split(engine, "s", load_labels(engine, query), strategy="composition", seed=0)
    config = TrainConfig(epochs=2, batch_size=8, seed=3, threads=1, hparams=SMALL)
    result = train_roost_ensemble(engine, query, split, name="roost-toy", n_members=2, config=config,
                                  use_dask=False)
    model = get_model(engine, "roost-toy")
    assert model.n_members == 2 and model.architecture == "roost" and model.split_id == split.id
    assert model.normaliser["std"] > 0 and set(result.metrics) == {"train", "val", "test"}
    run = predict(engine, "roost-toy", "split:s:test", device="cpu")
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT mean, std_aleatoric, std_epistemic, std_total FROM predictions_latest WHERE prediction_run_id = :r"
        ), {"r": run.run_id}).all()
    assert len(rows) == len(split.material_ids("test"))
    for r in rows:
        assert r.std_aleatoric > 0 and r.std_epistemic > 0
        assert r.std_total == pytest.approx(np.hypot(r.std_aleatoric, r.std_epistemic))

    # transfer: a new model starts from the registered weights and retrains all of them
    tuned = train_roost_ensemble(engine, query, split, name="roost-tuned", n_members=1, config=config,
                                 use_dask=False, init_from="roost-toy")
    assert get_model(engine, "roost-tuned").hyperparameters["elem_fea_len"] == SMALL["elem_fea_len"]
    with engine.connect() as conn:
        parent = conn.execute(sa.text("SELECT parent_model_id FROM model WHERE name = 'roost-tuned'")).scalar()
    assert parent == model.id and tuned.members[0].history[0]["train_loss"] > 0
