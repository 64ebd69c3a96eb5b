"""`matlake report`: a self-contained HTML file, checked in a real headless Chromium with the network off."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from matplotlib.image import imread

from matlake import db
from matlake.modelling.registry import get_model, model_metrics
from matlake.report import write_report

from .conftest import matlake_env, run_matlake

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
    # the network is off: every host name fails to resolve and every proxied request goes to a closed port
    "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
]
IMAGE_CHECK = """<script>window.addEventListener('load', function () {
  var images = document.images, loaded = 0;
  for (var i = 0; i < images.length; i++) { if (images[i].complete && images[i].naturalWidth > 0) loaded++; }
  var d = document.createElement('div'); d.id = 'image-check';
  d.setAttribute('data-loaded', loaded); d.setAttribute('data-total', images.length); document.body.appendChild(d);
});</script>"""


@pytest.fixture
def demo_engine(demo_session):
    engine = db.create_engine(f"duckdb:///{demo_session[0] / 'data' / 'matlake.duckdb'}", read_only=True)
    yield engine
    engine.dispose()


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless Chromium here (Debian: apt-get install chromium; .ci/run installs it)")


def _images(document: str) -> list[bytes]:
    sources = re.findall(r"<img [^>]*src='([^']*)'", document)
    assert all(s.startswith("data:image/png;base64,") for s in sources), "every figure is embedded"
    return [base64.b64decode(s.split(",", 1)[1]) for s in sources]


def _prediction_runs(engine) -> int:
    with db.connect(engine) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM prediction_run")).scalar()


@pytest.mark.parametrize("name", ["demo-roost", "demo-rf"])
def test_report_matches_the_registry_and_writes_nothing(demo_engine, tmp_path, name):
    model = get_model(demo_engine, name)
    runs_before = _prediction_runs(demo_engine)
    summary = write_report(demo_engine, name, tmp_path / "r.html", device="cpu")
    assert _prediction_runs(demo_engine) == runs_before, "a report does not store predictions unless asked"
    registry = {r["metric"]: r["value"] for r in model_metrics(demo_engine, model.id)
                if r["part"] == "test" and r["member"] is None}
    assert summary.selection == "split:demo-enthalpy-by-composition:test"
    assert summary.n_evaluated == registry["n"] and summary.n_unlabelled == 0
    for metric in ("mae", "rmse", "r2", "spearman_abs_error_std"):
        assert summary.metrics[metric] == pytest.approx(registry[metric], rel=1e-4), metric
    document = summary.path.read_text()
    for fact in (model.label, model.architecture, model.weights_sha256, "demo-enthalpy-by-composition",
                 f"ingest run {model.snapshot_run_id}", "Hyper-parameters", "code version"):
        assert fact in document
    assert "http://" not in document and "https://" not in document and "<script" not in document
    images = _images(document)
    assert len(images) == 3  # parity, confidence-error, calibration: an RF's std comes from its trees
    for png in images:
        assert imread(io.BytesIO(png), format="png").shape[1] > 300


def test_report_on_a_source_leaves_unlabelled_inputs_out(demo_engine, tmp_path):
    summary = write_report(demo_engine, "demo-rf", tmp_path / "r.html", on="source:demo", device="cpu")
    assert summary.n_evaluated == 2135 and summary.n_unlabelled == 288  # the AFLOW prototypes carry no enthalpy
    assert "288 selected inputs have no current label" in summary.path.read_text()


def test_report_stores_predictions_only_when_asked(demo_copy, tmp_path):
    engine = db.create_engine(f"duckdb:///{demo_copy}")
    before = _prediction_runs(engine)
    summary = write_report(engine, "demo-rf", tmp_path / "r.html", on="source:demo", device="cpu",
                           store_predictions=True)
    assert _prediction_runs(engine) == before + 1 and summary.prediction_run_id is not None
    with db.connect(engine) as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM prediction WHERE run_id = :r"),
                              {"r": summary.prediction_run_id}).scalar()
    assert stored == summary.n_evaluated + summary.n_unlabelled
    assert f"also stored as prediction run {summary.prediction_run_id}" in summary.path.read_text()
    # the stored run is the one `matlake predict` would write: it is found and reused, and a forced fresh
    # inference gives the same numbers as the report's in-memory predictions
    from matlake.modelling.predict import predict

    again = predict(engine, "demo-rf", "source:demo", device="cpu")
    assert again.reused and again.run_id == summary.prediction_run_id
    fresh = predict(engine, "demo-rf", "source:demo", device="cpu", force=True)
    with db.connect(engine) as conn:
        pairs = conn.execute(sa.text(
            "SELECT a.mean, b.mean FROM prediction a JOIN prediction b ON a.material_id = b.material_id "
            "WHERE a.run_id = :a AND b.run_id = :b"), {"a": summary.prediction_run_id, "b": fresh.run_id}).all()
    assert len(pairs) == stored and all(abs(x - y) <= 1e-9 * max(1.0, abs(x)) for x, y in pairs)
    engine.dispose()


def test_report_renders_offline_in_headless_chromium(demo_session, tmp_path):
    chromium = _chromium()
    folder = demo_session[0]
    output = tmp_path / "report.html"
    result = run_matlake(["report", "demo-roost", "--output", str(output), "--device", "cpu"],
                         matlake_env(folder), folder)
    assert result.returncode == 0, result.stderr
    assert f"wrote {output}" in result.stdout.replace("\n", "")
    probe = tmp_path / "probe.html"
    probe.write_text(output.read_text().replace("</body>", IMAGE_CHECK + "</body>"))
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, *profile, "--virtual-time-budget=5000", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=120)
    check = re.search(r'<div id="image-check" data-loaded="(\d+)" data-total="(\d+)"', dom.stdout)
    assert check, dom.stderr[-2000:]
    assert check.groups() == ("3", "3"), "every figure decoded in the browser"
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, *CHROMIUM_FLAGS, *profile, "--window-size=1200,3000", f"--screenshot={shot}",
                    output.as_uri()], capture_output=True, timeout=120, check=True)
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (3000, 1200)
    assert pixels.std() > 0.05 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, "the screenshot is blank"


def test_report_user_errors_are_one_line(demo_session, tmp_path):
    folder = demo_session[0]
    env = matlake_env(folder)
    for args, fragment in (
        (["report", "no-such-model"], "no registered model 'no-such-model'"),
        (["report", "demo-rf", "--on", "sql:SELECT 1 AS x"], "must return a composition_id column"),
        (["report", "demo-rf", "--on", "split:demo-enthalpy-by-composition:nope"], "matched nothing"),
    ):
        result = run_matlake(args, env, tmp_path)
        assert result.returncode != 0 and "Traceback" not in result.stderr + result.stdout
        assert fragment in result.stderr, result.stderr
