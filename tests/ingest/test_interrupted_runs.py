"""A run killed at any moment leaves a consistent database; running it again ends exactly like an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from matlake import db
from matlake.ingest.framework import ingest

from . import toy_source

ROOT = Path(__file__).resolve().parents[2]
N = 400
ROWS = [(f"t-{i}", ["Fe2O3", "NaCl", "MgO", "LiCoO2"][i % 4], f"{-i / 100:.2f}") for i in range(N)] + [
    ("t-bad", "Qq2", "1.0")
]

SNAPSHOT_QUERIES = {
    "material": "SELECT source_record_id, first_run_id FROM material ORDER BY 1",
    "material_revision": "SELECT m.source_record_id, r.status, r.content_hash, r.valid_from_run_id, r.valid_to_run_id "
                         "FROM material_revision r JOIN material m ON m.id = r.material_id ORDER BY 1, 4",
    "property_value": "SELECT m.source_record_id, p.value, p.valid_from_run_id, p.valid_to_run_id "
                      "FROM property_value p JOIN material m ON m.id = p.material_id ORDER BY 1, 3",
    "composition": "SELECT formula FROM composition ORDER BY 1",
    "ingest_reject": "SELECT run_id, position, record_key, reason_code FROM ingest_reject ORDER BY 2",
    "ingest_run": "SELECT id, status, n_read, n_inserted, n_updated, n_unchanged, n_rejected, n_withdrawn "
                  "FROM ingest_run ORDER BY id",
}


def _snapshot(url: str) -> dict:
    engine = db.create_engine(url)
    with engine.connect() as conn:
        return {k: [tuple(r) for r in conn.execute(sa.text(q)).all()] for k, q in SNAPSHOT_QUERIES.items()}


def _start_child_ingest(url: str, csv: Path, wrap_normalise: str, text: bool = False) -> subprocess.Popen:
    """``ingest`` of the toy source in a child process, with ``toy_source.normalise`` replaced by the function
    ``wrapped(raw)`` that ``wrap_normalise`` defines (it may call ``normalise``, the original)."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from tests.ingest import toy_source
        from matlake import db
        from matlake.ingest.framework import RunInterrupted, ingest
        normalise = toy_source.normalise
    """) + textwrap.dedent(wrap_normalise) + textwrap.dedent(f"""
        toy_source.normalise = wrapped
        try:
            ingest(toy_source, [{str(csv)!r}], engine=db.create_engine({url!r}), batch_size=25)
        except RunInterrupted as exc:
            print("interrupted:", exc, flush=True)
    """)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text)


def _start_slow_ingest(url: str, csv: Path) -> subprocess.Popen:
    return _start_child_ingest(url, csv, """
        toy_source.SLOW_S = 0.01
        seen = [0]
        def wrapped(raw):
            seen[0] += 1
            if seen[0] % 50 == 0:
                print(seen[0], flush=True)
            return normalise(raw)
    """)


def _wait_for_progress(proc: subprocess.Popen, n: int) -> None:
    """Block until the ingest has normalised ``n`` records (so at least one batch is committed)."""
    for line in proc.stdout:
        if int(line) >= n:
            return
    raise AssertionError(f"the ingest ended early: {proc.stderr.read().decode()[-2000:]}")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_to_the_uninterrupted_state(any_url, tmp_path, sig):
    csv = toy_source.write(tmp_path / "rows.csv", ROWS)
    reference_url = f"duckdb:///{tmp_path / 'reference.duckdb'}"
    db.upgrade(db.create_engine(reference_url))
    ingest(toy_source, [csv], engine=db.create_engine(reference_url), batch_size=25)
    expected = _snapshot(reference_url)

    db.upgrade(db.create_engine(any_url))
    proc = _start_slow_ingest(any_url, csv)
    _wait_for_progress(proc, 150)
    os.kill(proc.pid, sig)
    proc.wait(timeout=30)

    partial = _snapshot(any_url)
    [run] = partial["ingest_run"]
    assert run[1] in {"running", "interrupted"}
    assert 0 < run[2] < len(ROWS)
    assert run[2] == run[3] + run[4] + run[5] + run[6]  # counters match the committed batches
    assert len(partial["material"]) == run[3]
    if sig == signal.SIGTERM:
        assert run[1] == "interrupted"

    [summary] = ingest(toy_source, [csv], engine=db.create_engine(any_url), batch_size=25)
    assert summary.resumed
    assert _snapshot(any_url) == expected


def test_sigterm_inside_a_duckdb_statement_leaves_the_run_interrupted(duckdb_url, tmp_path, monkeypatch):
    """DuckDB cancels a statement running when SIGTERM arrives and raises RuntimeError('Query interrupted') in place of
    the framework's exception; the run must still be marked interrupted (resumable), not failed."""
    import threading

    import duckdb

    from matlake.ingest.framework import RunInterrupted

    csv = toy_source.write(tmp_path / "rows.csv", ROWS)
    db.upgrade(db.create_engine(duckdb_url))
    normalise = toy_source.normalise

    def normalise_with_a_long_query(raw):
        if raw.position == 60:  # after two committed batches of 25
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
            # long enough for the signal to land inside it, short enough (seconds) that a regression fails, not hangs
            duckdb.connect().execute("SELECT count(*) FROM range(20000000000) t(i) WHERE i % 7 = 3").fetchall()
        return normalise(raw)

    monkeypatch.setattr(toy_source, "normalise", normalise_with_a_long_query)
    with pytest.raises(RunInterrupted):
        ingest(toy_source, [csv], engine=db.create_engine(duckdb_url), batch_size=25)
    [run] = _snapshot(duckdb_url)["ingest_run"]
    assert run[1] == "interrupted" and run[2] == 50  # the two committed batches; the one in flight rolled back

    monkeypatch.setattr(toy_source, "normalise", normalise)
    [summary] = ingest(toy_source, [csv], engine=db.create_engine(duckdb_url), batch_size=25)
    assert summary.resumed and summary.status == "succeeded"


def test_ctrl_c_inside_a_duckdb_statement_leaves_the_run_interrupted(duckdb_url, tmp_path):
    """As for SIGTERM (above), Ctrl-C makes DuckDB cancel the running statement and raise RuntimeError('Query
    interrupted') in place of KeyboardInterrupt; the run must still be marked interrupted (resumable), not failed.
    In a child process, as a user's `matlake ingest` would be: pytest has its own view of Ctrl-C."""
    csv = toy_source.write(tmp_path / "rows.csv", ROWS)
    db.upgrade(db.create_engine(duckdb_url))
    proc = _start_child_ingest(duckdb_url, csv, """
        import duckdb
        def wrapped(raw):
            if raw.position == 60:  # after two committed batches of 25
                print("querying", flush=True)
                # long enough for the signal to land inside it (about a minute uninterrupted), short enough that a
                # regression fails the test instead of hanging it
                duckdb.connect().execute("SELECT count(*) FROM range(20000000000) t(i) WHERE i % 7 = 3").fetchall()
            return normalise(raw)
    """, text=True)
    assert proc.stdout.readline().strip() == "querying", proc.stderr.read()[-2000:]
    time.sleep(0.5)  # inside the statement
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert out.startswith("interrupted:"), err[-2000:]
    [run] = _snapshot(duckdb_url)["ingest_run"]
    assert run[1] == "interrupted" and run[2] == 50  # the two committed batches; the one in flight rolled back

    [summary] = ingest(toy_source, [csv], engine=db.create_engine(duckdb_url), batch_size=25)
    assert summary.resumed and summary.status == "succeeded"
