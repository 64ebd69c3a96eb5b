"""`pip install .` produces one `matlake.*` namespace with its migrations; no top-level `schema` package."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    if result.returncode != 0:
        pytest.fail(f"building the wheel failed: {result.stderr[-2000:]}")
    [built] = out.glob("matlake-*.whl")
    return built


def test_wheel_maps_top_level_folders_into_one_namespace(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("matlake/cli.py", "matlake/schema/materials.py", "matlake/ingest/framework.py",
                     "matlake/featurestore/__init__.py", "matlake/modelling/__init__.py",
                     "matlake/migrations/env.py", "matlake/migrations/versions/0001_v1_schema.py",
                     "matlake/migrations/script.py.mako"):
        assert expected in names, expected
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"matlake"}


def test_installed_wheel_imports_and_migrates_from_any_folder(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    code = (
        "import matlake.schema, matlake.migrations, importlib.util;"
        "from matlake import db;"
        "assert matlake.schema.__file__.startswith(%r), matlake.schema.__file__;"
        "assert importlib.util.find_spec('schema') is None or 'site-packages/schema' in "
        "importlib.util.find_spec('schema').origin;"
        "e = db.create_engine('duckdb:///' + %r); print(db.upgrade(e))"
    ) % (str(target), str(tmp_path / "x.duckdb"))
    env = {**os.environ, "PYTHONPATH": str(target)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    from matlake import db

    assert result.stdout.strip().splitlines()[-1] == db.head_revision()


def test_editable_install_imports_from_any_folder(tmp_path):
    result = subprocess.run([sys.executable, "-c", "import matlake.schema as s; print(s.__file__)"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(ROOT / "schema" / "__init__.py")
