"""The command line as a user meets it: real processes, real DuckDB files, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

MATLAKE = [sys.executable, "-m", "matlake.cli"]


def run(args: list[str], env: dict, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(MATLAKE + args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _env(folder: Path) -> dict:
    e = dict(os.environ)
    e.update({"MATLAKE_DATA_DIR": str(folder / "data"), "MATLAKE_CONFIG": str(folder / "none.toml"),
              "MATLAKE_LOCK_TIMEOUT_S": "1", "COLUMNS": "200"})
    for key in ("MATLAKE_DATABASE_URL", "MATLAKE_MODELS_DIR", "MATLAKE_FEATURE_STORE"):
        e.pop(key, None)
    return e


@pytest.fixture
def env(tmp_path) -> dict:
    return _env(tmp_path)


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    message = result.stderr.strip()
    for fragment in fragments:
        assert fragment in message, message


@pytest.fixture(scope="module")
def demo(demo_session):
    """One real `matlake demo` for the session (it trains models: minutes, not seconds), see conftest.py."""
    return demo_session


@pytest.fixture
def demo_db(demo):
    return demo[1]


@pytest.fixture
def demo_env(demo):
    return _env(demo[0])


def test_demo_loads_trains_predicts_and_is_idempotent(demo, demo_env):
    folder, first = demo
    assert "read 2135, inserted 2135" in first.stdout
    assert "read 288, inserted 288" in first.stdout
    assert "trained demo-rf v1" in first.stdout and "trained demo-roost v1" in first.stdout
    assert (folder / "data" / "matlake.duckdb").exists()
    again = run(["demo"], demo_env, folder)
    assert "read 2135, inserted 0, updated 0, unchanged 2135" in again.stdout
    assert "demo-roost v1 already registered" in again.stdout and "(already stored)" in again.stdout
    env, tmp_path = demo_env, folder
    counts = run(["sql", "SELECT dataset, count(*) AS n FROM materials_current GROUP BY 1 ORDER BY 1",
                  "--format", "json"], env, tmp_path)
    assert json.loads(counts.stdout) == [{"dataset": "aflow_prototypes", "n": 288},
                                         {"dataset": "exp_formation_enthalpy", "n": 2135}]


def test_per_atom_conversion_of_formation_enthalpies(demo, demo_env):
    tmp_path, env = demo[0], demo_env
    out = run(["sql", "SELECT value FROM properties_current WHERE source_record_id = 'Ag2CO3'", "-f", "json"],
              env, tmp_path)
    [row] = json.loads(out.stdout)
    assert row["value"] == pytest.approx(-5.242247592137407 / 6, rel=1e-12)


def test_sql_output_formats(demo, demo_env, tmp_path):
    env, folder = demo_env, demo[0]
    query = "SELECT formula, value FROM properties_current ORDER BY value LIMIT 3"
    csv = run(["sql", query, "--format", "csv"], env, folder)
    assert csv.returncode == 0 and csv.stdout.splitlines()[0] == '"formula","value"'
    assert len(csv.stdout.splitlines()) == 4
    target = tmp_path / "out" / "top.parquet"
    parquet = run(["sql", query, "--format", "parquet", "--output", str(target)], env, folder)
    assert parquet.returncode == 0, parquet.stderr
    assert pq.read_table(target).num_rows == 3
    table = run(["sql", query], env, folder)
    assert "formula" in table.stdout and "value" in table.stdout


def test_runs_shows_ingestion_history(demo, demo_env):
    result = run(["runs"], demo_env, demo[0])
    assert result.returncode == 0
    assert "exp_formation_enthalpy" in result.stdout and "succeeded" in result.stdout


def test_db_current_and_init(env, tmp_path):
    assert run(["init"], env, tmp_path).returncode == 0
    current = run(["db", "current"], env, tmp_path)
    assert "up to date" in current.stdout


def test_sql_syntax_error_is_one_line(demo, demo_env):
    assert_user_error(run(["sql", "SELEC nonsense FROM"], demo_env, demo[0]), "error:", "query failed")


def test_models_list_and_show(demo, demo_env):
    listing = run(["models", "list"], demo_env, demo[0])
    assert "demo-rf" in listing.stdout and "demo-roost" in listing.stdout
    shown = run(["models", "show", "demo-roost"], demo_env, demo[0])
    assert shown.returncode == 0 and "sha256" in shown.stdout and "mae" in shown.stdout


def test_unknown_command(env, tmp_path):
    result = run(["frobnicate"], env, tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "No such command" in result.stderr


def test_missing_input_file(env, tmp_path):
    assert_user_error(run(["ingest", "demo", str(tmp_path / "absent.json")], env, tmp_path), "does not exist")


def test_unknown_source(env, tmp_path):
    assert_user_error(run(["ingest", "nosuchsource", "x"], env, tmp_path), "unknown source")


def test_unwritable_data_folder(env, tmp_path):
    locked = tmp_path / "readonly"
    locked.mkdir()
    locked.chmod(0o500)
    env["MATLAKE_DATA_DIR"] = str(locked / "sub")
    if os.geteuid() == 0:
        env["MATLAKE_DATA_DIR"] = "/proc/matlake-cannot-write-here"
    assert_user_error(run(["init"], env, tmp_path), "error:", "cannot")


def test_query_before_init(env, tmp_path):
    assert_user_error(run(["sql", "SELECT 1"], env, tmp_path), "does not exist", "matlake init")


def test_corrupt_database_file(env, tmp_path):
    path = tmp_path / "data" / "matlake.duckdb"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database" * 1000)
    assert_user_error(run(["init"], env, tmp_path), "error:", str(path))


def test_second_writer_gets_a_clear_message(env, tmp_path):
    assert run(["init"], env, tmp_path).returncode == 0
    db_path = tmp_path / "data" / "matlake.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(db_path)!r}); print('ok', flush=True); "
                               "time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        started = time.monotonic()
        result = run(["init"], env, tmp_path)
        assert_user_error(result, "in use by", f"PID {holder.pid}")
        assert result.returncode == 3
        assert time.monotonic() - started < 30
        reader = run(["sql", "SELECT 1"], env, tmp_path)
        assert_user_error(reader, "in use by")
    finally:
        holder.kill()
        holder.wait()
