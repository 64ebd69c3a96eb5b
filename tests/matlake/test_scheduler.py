"""The scheduler as it runs in production: real `matlake scheduler` processes on second-level cron schedules, real
worker processes, real DuckDB files, SIGTERM from outside. Every wait is bounded."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from matlake.locks import DatabaseLock

from .scheduler_toy import write

ROOT = Path(__file__).resolve().parents[2]
MATLAKE = [sys.executable, "-m", "matlake.cli"]
TOY = "tests.matlake.scheduler_toy"


# ---- helpers ---------------------------------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path) -> dict:
    e = dict(os.environ)
    e.update({"MATLAKE_DATA_DIR": str(tmp_path / "data"), "MATLAKE_CONFIG": str(tmp_path / "none.toml"),
              "MATLAKE_LOCK_TIMEOUT_S": "10", "PYTHONPATH": str(ROOT), "COLUMNS": "250", "TOY_SLOW_S": "0"})
    e.pop("MATLAKE_DATABASE_URL", None)
    e.pop("TOY_PROGRESS", None)
    return e


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def write_jobs(path: Path, jobs: list[dict], scheduler: dict | None = None) -> Path:
    lines = []
    if scheduler:
        lines += ["[scheduler]"] + [f"{k} = {toml_value(v)}" for k, v in scheduler.items()] + [""]
    for job in jobs:
        lines += ["[[jobs]]"] + [f"{k} = {toml_value(v)}" for k, v in job.items()] + [""]
    path.write_text("\n".join(lines))
    return path


def once_soon(delay_s: int = 3) -> str:
    """A 6-field cron expression (seconds last) that fires ``delay_s`` seconds from now and then every 20 s, so a
    scheduler that starts late on a busy machine waits at most 20 s more; tests finish well within 20 s of a fire."""
    first = (datetime.now() + timedelta(seconds=delay_s)).second
    return "* * * * * " + ",".join(str(s) for s in sorted((first + k) % 60 for k in (0, 20, 40)))


def toy_job(name: str = "toy", **extra) -> dict:
    return {"name": name, "source": "toy", "module": TOY, "input": ["rows.csv"], "schedule": once_soon(), **extra}


def toy_rows(n: int, start: int = 0) -> list[tuple[str, str, str]]:
    return [(f"t-{i}", ["Fe2O3", "NaCl", "MgO", "LiCoO2"][i % 4], f"{-i / 100:.2f}") for i in range(start, start + n)]


def start(jobs: Path, env: dict, tmp_path: Path, tag: str = "a") -> subprocess.Popen:
    out = open(tmp_path / f"scheduler-{tag}.out", "w")
    err = open(tmp_path / f"scheduler-{tag}.err", "w")
    proc = subprocess.Popen(MATLAKE + ["scheduler", "run", "--jobs", str(jobs)], env=env, cwd=tmp_path,
                            stdout=out, stderr=err)
    proc.tag, proc.dir = tag, tmp_path
    return proc


def output(proc: subprocess.Popen) -> tuple[str, str]:
    return ((proc.dir / f"scheduler-{proc.tag}.out").read_text(), (proc.dir / f"scheduler-{proc.tag}.err").read_text())


def stop(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"the scheduler did not stop within {timeout} s after SIGTERM: {output(proc)}")
    return (rc, *output(proc))


def events(jobs: Path) -> list[dict]:
    log = jobs.with_name(jobs.stem + ".log.jsonl")
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def wait_for(condition, procs: list[subprocess.Popen], timeout: float = 90, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"scheduler {p.tag} exited early ({p.returncode}) waiting for {what}: {output(p)}")
        time.sleep(0.1)
    for p in procs:
        p.kill()
    raise AssertionError(f"timed out after {timeout} s waiting for {what}: {[output(p) for p in procs]}")


def query(tmp_path: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(tmp_path / "data" / "matlake.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def of(kind: str, evts: list[dict], job: str | None = None) -> list[dict]:
    return [e for e in evts if e["event"] == kind and (job is None or e.get("job") == job)]


# ---- tests -----------------------------------------------------------------------------------------------------


def test_list_shows_next_fire_times_and_bad_jobs_files_are_one_line_errors(tmp_path, env):
    jobs = write_jobs(tmp_path / "jobs.toml", [toy_job(schedule="* * * * * */10")])
    shown = subprocess.run(MATLAKE + ["scheduler", "list", "--jobs", str(jobs)], env=env, capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "toy" in shown.stdout and "* * * * * */10" in shown.stdout
    times = [datetime.fromisoformat(t) for t in re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", shown.stdout)]
    assert len(times) == 3 and all(t.second % 10 == 0 for t in times)
    assert [(b - a).total_seconds() for a, b in zip(times, times[1:])] == [10, 10]

    for bad, message in ((toy_job(schedule="every minute"), "is not a cron expression"),
                         (toy_job(retries="3"), "retries must be a number"),
                         (toy_job(colour="blue"), "unknown key(s) ['colour']"),
                         ({**toy_job(), "source": "nope", "module": None}, "unknown source 'nope'")):
        write_jobs(jobs, [{k: v for k, v in bad.items() if v is not None}])
        result = subprocess.run(MATLAKE + ["scheduler", "list", "--jobs", str(jobs)], env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode != 0
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_job_runs_on_its_schedule_appears_in_the_history_and_publishes_a_snapshot(tmp_path, env):
    write(tmp_path / "rows.csv", toy_rows(20) + [("t-bad", "Qq2", "1.0")])
    jobs = write_jobs(tmp_path / "jobs.toml", [toy_job()])
    proc = start(jobs, env, tmp_path)
    wait_for(lambda: of("succeeded", events(jobs)), [proc], what="the job to succeed")
    rc, out, err = stop(proc)
    assert rc == 0, err
    assert "scheduler stopped by SIGTERM; no job was running" in out
    assert "Traceback" not in err

    assert query(tmp_path, "SELECT id, status, n_read, n_inserted, n_rejected FROM ingest_run") == [
        (1, "succeeded", 21, 20, 1)]
    done = of("succeeded", events(jobs))[0]
    assert done["run_ids"] == [1] and done["attempts"] == 1
    runs = subprocess.run(MATLAKE + ["runs"], env=env, capture_output=True, text=True, timeout=60)
    assert re.search(r"1 +│ toy +│ toy_energy +│ succeeded +│ 21 +│ 20", runs.stdout), runs.stdout

    pointer = json.loads((tmp_path / "data" / "snapshots" / "matlake.current.json").read_text())
    assert pointer["run_id"] == 1 and pointer["job"] == "toy"
    snap = duckdb.connect(str(tmp_path / "data" / "snapshots" / pointer["file"]), read_only=True)
    assert snap.execute("SELECT count(*) FROM materials_current").fetchone() == (20,)
    snap.close()

    listed = subprocess.run(MATLAKE + ["scheduler", "list", "--jobs", str(jobs)], env=env, capture_output=True,
                            text=True, timeout=60)
    assert "succeeded" in listed.stdout


def test_a_failing_job_retries_with_backoff_then_runs_the_failure_hook(tmp_path, env):
    write(tmp_path / "boom.csv", toy_rows(5) + [("t-boom", "NaCl", "boom")])
    hook = 'printf "%s|%s|%s|%s" "$MATLAKE_JOB" "$MATLAKE_JOB_ATTEMPTS" "$MATLAKE_JOB_RUN_IDS" "$MATLAKE_JOB_ERROR" > '
    schedule = once_soon()
    jobs = write_jobs(tmp_path / "jobs.toml", [
        toy_job("missing", input=["nothing/*.csv"], schedule=schedule, retries=2, backoff_s=0.3,
                on_failure=hook + "missing.marker"),
        toy_job("boom", input=["boom.csv"], schedule=schedule, retries=1, backoff_s=0.2,
                on_failure=hook + "boom.marker"),
    ])
    proc = start(jobs, env, tmp_path)
    wait_for(lambda: len(of("on_failure", events(jobs))) == 2, [proc], what="both failure hooks")
    rc, out, err = stop(proc)
    assert rc == 0 and "Traceback" not in err, err
    evts = events(jobs)

    attempts = of("attempt", evts, "missing")
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert all("matches no files" in a["error"] for a in attempts)
    assert [r["delay_s"] for r in of("retry", evts, "missing")] == [0.3, 0.6]
    gaps = [(datetime.fromisoformat(b["time"]) - datetime.fromisoformat(a["time"])).total_seconds()
            for a, b in zip(attempts, attempts[1:])]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6
    assert (tmp_path / "missing.marker").read_text() == "missing|3||input 'nothing/*.csv' matches no files"

    # a failure inside the framework is a failed run in the ingestion history, one per attempt
    runs = query(tmp_path, "SELECT id, status, error FROM ingest_run ORDER BY id")
    assert [(r[0], r[1]) for r in runs] == [(1, "failed"), (2, "failed")]
    assert all("blew up" in r[2] for r in runs)
    assert (tmp_path / "boom.marker").read_text().startswith("boom|2|1 2|RuntimeError: record t-boom blew up")
    assert len(of("failed", evts)) == 2 and not of("succeeded", evts)


def test_overlapping_triggers_are_skipped_and_never_run_twice(tmp_path, env):
    """Two scheduler processes on one database and one jobs file, a job slower than its 2 s interval."""
    write(tmp_path / "rows.csv", toy_rows(40))
    jobs = write_jobs(tmp_path / "jobs.toml", [toy_job(schedule="* * * * * */2")])
    env = {**env, "TOY_SLOW_S": "0.05"}
    procs = [start(jobs, env, tmp_path, "a"), start(jobs, env, tmp_path, "b")]

    def enough() -> bool:
        evts = events(jobs)
        skipped = of("skipped", evts)
        return (len(of("succeeded", evts)) >= 2 and any("locked by" in s["reason"] for s in skipped)
                and any(s["reason"].startswith("overlap") for s in skipped))

    wait_for(enough, procs, timeout=90, what="two runs and both kinds of skipped trigger")
    results = [stop(p) for p in procs]
    assert all(rc == 0 for rc, _, _ in results), results
    evts = events(jobs)

    started = [e["fire"] for e in of("started", evts)]
    assert len(started) == len(set(started)), f"a trigger ran twice: {started}"
    pids = {p.pid for p in procs}
    locked = [s for s in of("skipped", evts) if "locked by" in s["reason"]]
    for s in locked:  # the holder named is the other scheduler
        assert f"PID {(pids - {s['pid']}).pop()}" in s["holder"]
    runs = query(tmp_path, "SELECT id, status, started_at, finished_at FROM ingest_run ORDER BY started_at")
    assert len(runs) >= 2
    for a, b in zip(runs, runs[1:]):
        assert a[3] is not None and a[3] <= b[2], f"runs {a[0]} and {b[0]} overlapped"
    assert {r[1] for r in runs} <= {"succeeded", "interrupted"}


def test_sigterm_during_a_run_keeps_whole_batches_and_a_rerun_completes(tmp_path, env):
    rows = toy_rows(59) + [("t-bad", "Qq2", "1.0")]
    write(tmp_path / "rows.csv", rows)
    progress = tmp_path / "progress.txt"
    jobs = write_jobs(tmp_path / "jobs.toml", [toy_job(batch_size=5)])
    proc = start(jobs, {**env, "TOY_SLOW_S": "0.05", "TOY_PROGRESS": str(progress)}, tmp_path)
    wait_for(lambda: progress.exists() and len(progress.read_text().split()) >= 17, [proc],
             what="three batches to be normalised")
    rc, out, err = stop(proc, timeout=30)
    assert rc == 0, err
    assert "scheduler stopped by SIGTERM during job 'toy'" in " ".join(out.split())
    assert "Traceback" not in err
    assert of("interrupted", events(jobs), "toy") and not of("succeeded", events(jobs))

    (run_id, status, n_read, n_inserted, n_rejected, attempts), = query(
        tmp_path, "SELECT id, status, n_read, n_inserted, n_rejected, attempts FROM ingest_run")
    assert status == "interrupted" and attempts == 1
    assert 0 < n_read < len(rows) and n_read % 5 == 0, n_read  # whole batches only
    present = query(tmp_path, f"SELECT (SELECT count(*) FROM material_revision WHERE valid_from_run_id = {run_id}), "
                              f"(SELECT count(*) FROM property_value WHERE valid_from_run_id = {run_id}), "
                              f"(SELECT count(*) FROM ingest_reject WHERE run_id = {run_id})")[0]
    assert present == (n_inserted, n_inserted, n_rejected) and n_read == n_inserted + n_rejected

    write_jobs(jobs, [toy_job(batch_size=5)])  # the next trigger, a few seconds from now
    proc = start(jobs, env, tmp_path, "rerun")
    wait_for(lambda: of("succeeded", events(jobs)), [proc], what="the rerun")
    assert stop(proc)[0] == 0
    assert query(tmp_path, "SELECT id, status, n_read, n_inserted, n_rejected, attempts FROM ingest_run") == [
        (run_id, "succeeded", 60, 59, 1, 2)]
    assert query(tmp_path, "SELECT count(*) FROM materials_current") == [(59,)]


def test_a_job_over_its_timeout_is_stopped_and_its_run_is_left_resumable(tmp_path, env):
    write(tmp_path / "rows.csv", toy_rows(150))
    jobs = write_jobs(tmp_path / "jobs.toml", [toy_job(timeout=8, batch_size=5, on_failure="touch timeout.marker")])
    proc = start(jobs, {**env, "TOY_SLOW_S": "0.1"}, tmp_path)  # 15 s of work; 8 s leave time to start on a busy box
    wait_for(lambda: of("on_failure", events(jobs)), [proc], what="the timeout")
    assert stop(proc)[0] == 0
    failed, = of("failed", events(jobs))
    assert "timed out after 8 s" in failed["error"] and (tmp_path / "timeout.marker").exists()
    (status, n_read, n_inserted, error), = query(tmp_path, "SELECT status, n_read, n_inserted, error FROM ingest_run")
    assert status == "interrupted" and n_read % 5 == 0 and n_read < 150, (status, n_read, error)
    assert query(tmp_path, "SELECT count(*) FROM material_revision") == [(n_inserted,)]


def test_the_database_lock_excludes_other_processes(tmp_path, duckdb_url):
    probe = ("import sys; from matlake.locks import DatabaseLock; lock = DatabaseLock(sys.argv[1]); "
             "got = lock.acquire(); print(got, lock.holder() if not got else '')")

    def other_process() -> str:
        done = subprocess.run([sys.executable, "-c", probe, duckdb_url], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        return done.stdout.strip()

    lock = DatabaseLock(duckdb_url)
    assert lock.acquire(owner="test")
    answer = other_process()
    assert answer.startswith("False") and f"PID {os.getpid()}" in answer and "test" in answer
    lock.release()
    assert other_process() == "True"


@pytest.mark.postgres
def test_the_database_lock_is_an_advisory_lock_on_postgresql(postgres_url):
    first, second = DatabaseLock(postgres_url), DatabaseLock(postgres_url)
    assert first.acquire(owner="job a")
    assert not second.acquire(timeout_s=0.3)
    assert "matlake-scheduler" in second.holder()
    first.release()
    assert second.acquire()
    second.release()
