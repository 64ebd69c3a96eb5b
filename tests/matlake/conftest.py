"""One real `matlake demo` database per test session, shared by the CLI, report and notebook tests.

The demo trains models (about a minute on 2 cores), so it runs once. Tests that write to a database take a private
copy of the file (`demo_copy`); the feature files and model weights the copy's registry points to stay in place.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

MATLAKE = [sys.executable, "-m", "matlake.cli"]


def matlake_env(folder: Path, database: Path | None = None) -> dict:
    """Environment for a `matlake` subprocess whose data folder is ``folder/data``."""
    e = dict(os.environ)
    e.update({"MATLAKE_DATA_DIR": str(folder / "data"), "MATLAKE_CONFIG": str(folder / "none.toml"),
              "MATLAKE_LOCK_TIMEOUT_S": "1", "COLUMNS": "200"})
    for key in ("MATLAKE_DATABASE_URL", "MATLAKE_MODELS_DIR", "MATLAKE_FEATURE_STORE"):
        e.pop(key, None)
    if database is not None:
        e["MATLAKE_DATABASE_URL"] = f"duckdb:///{database}"
    return e


def run_matlake(args: list[str], env: dict, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(MATLAKE + args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def demo_session(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The folder of one real `matlake demo` run (database in ``folder/data``) and that run's output."""
    folder = tmp_path_factory.mktemp("demo")
    result = run_matlake(["demo"], matlake_env(folder), folder, timeout=900)
    assert result.returncode == 0, result.stderr
    return folder, result


@pytest.fixture
def demo_copy(demo_session, tmp_path) -> Path:
    """A private copy of the demo's DuckDB file for a test that writes (its weights and features are shared)."""
    target = tmp_path / "demo-copy" / "matlake.duckdb"
    target.parent.mkdir(parents=True)
    shutil.copy2(demo_session[0] / "data" / "matlake.duckdb", target)
    return target
