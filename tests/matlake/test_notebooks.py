"""The notebooks of notebooks/ execute top to bottom against a `matlake demo` database, and are committed clean."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from matplotlib.image import imread

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
EXPECTED_FIGURES = {
    "01_explore_materials_and_predictions.ipynb": [
        "explore_enthalpy_by_elements.png", "explore_magpie_vs_enthalpy.png", "explore_demo-rf_parity.png",
        "explore_demo-roost_confidence.png", "explore_demo-roost_calibration.png"],
    "02_train_and_evaluate_a_model.ipynb": ["train_parity.png", "train_confidence.png", "train_calibration.png"],
    "03_cuprate_distances_and_calibrations.ipynb": ["cuprates_prototype_distances.png", "cuprates_tc_vs_apical.png"],
    "04_synthesis_recipes.ipynb": ["synthesis_heating_timelines.png"],
}


def test_every_notebook_is_listed():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED_FIGURES)


@pytest.mark.parametrize("name", sorted(EXPECTED_FIGURES))
def test_committed_notebook_has_no_outputs(name):
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: strip outputs before committing"


def _text(notebook) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", "") or output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_FIGURES))
def test_notebook_executes_against_the_demo_database(name, demo_session, demo_copy, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    output = tmp_path / "output"
    monkeypatch.setenv("MATLAKE_DATABASE_URL", f"duckdb:///{demo_copy}")
    monkeypatch.setenv("MATLAKE_FEATURE_STORE", str(demo_session[0] / "data" / "features"))
    monkeypatch.setenv("MATLAKE_NOTEBOOK_OUTPUT", str(output))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError with the cell and its traceback on any failure
    for figure in EXPECTED_FIGURES[name]:
        image = imread(io.BytesIO((output / figure).read_bytes()), format="png")
        assert image.shape[0] > 100 and image[..., :3].std() > 0.05, f"{figure} is blank"
    text = _text(notebook)
    if name.startswith("02"):
        assert (output / "notebook-rf-report.html").stat().st_size > 50_000
        assert re.search(r"213 test predictions, MAE 0\.\d+ eV/atom", text)
    if name.startswith("03"):
        found = re.search(r"La214 calibration alpha = ([\d.]+) against z\(O apical\) = ([\d.]+)", text)
        assert found and abs(float(found[1]) - float(found[2])) < 0.002, text[-2000:]
        assert "given the stacking axis: 1" in text
    if name.startswith("04"):
        assert "example database with 3 recipes" in text
