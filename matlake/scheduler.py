"""Scheduled ingestion: jobs from a TOML file, run on cron schedules, one at a time per database.

- Schedules are cron expressions evaluated by croniter (5 fields, or 6 with seconds as the 6th field), in local
  time or the ``[scheduler] timezone``.
- Every attempt runs in a worker process (``python -m matlake.scheduler``) so a job's ``timeout`` can stop it: the
  worker gets SIGTERM, which the ingestion framework turns into an interrupted run (batch in flight rolled back,
  committed batches kept, the next attempt resumes the same run), and SIGKILL after ``stop_grace_s``.
- A :class:`~matlake.locks.DatabaseLock` (flock beside the DuckDB file, advisory lock on PostgreSQL) is held for a
  whole execution (all attempts and the snapshot), and inherited by the worker. A trigger that comes due while the
  lock is held, by this scheduler or any other process, is skipped and recorded; triggers are never queued, so a
  job never runs twice for one trigger nor two runs overlap.
- Failed attempts are retried with exponential backoff; after the last one the ``on_failure`` command runs with the
  job's name and error in environment variables. Every event goes to a JSON-lines log beside the jobs file.
- After each successful job on DuckDB a read-only snapshot is published (:mod:`matlake.snapshots`) for notebooks.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from . import db
from .config import get_settings
from .errors import ConfigError
from .locks import DatabaseLock

DEFAULT_JOBS_FILE = Path("matlake-jobs.toml")
JOB_KEYS = {"name", "source", "module", "input", "download", "release", "schedule", "mode", "retries", "backoff_s",
            "max_backoff_s", "timeout", "on_failure", "batch_size"}
SCHEDULER_KEYS = {"timezone", "log", "snapshots", "keep_snapshots", "stop_grace_s", "hook_timeout_s",
                  "snapshot_timeout_s"}


# ---- the jobs file ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    """One scheduled ingestion, as written in the jobs file."""

    name: str
    source: str
    schedule: str
    input: tuple[str, ...] = ()
    download: bool = False
    release: str | None = None
    module: str | None = None
    mode: str = "full"
    retries: int = 0
    backoff_s: float = 30.0
    max_backoff_s: float = 3600.0
    timeout_s: float = 6 * 3600.0
    on_failure: str | None = None
    batch_size: int | None = None


@dataclass(frozen=True, slots=True)
class JobsFile:
    """A parsed jobs file: the jobs and the scheduler's own settings."""

    path: Path
    jobs: tuple[Job, ...]
    timezone: str | None = None
    log_path: Path | None = None
    snapshots: bool = True
    keep_snapshots: int = 3
    stop_grace_s: float = 60.0
    hook_timeout_s: float = 60.0
    snapshot_timeout_s: float = 60.0

    @property
    def tz(self) -> ZoneInfo | None:
        return ZoneInfo(self.timezone) if self.timezone else None

    @property
    def log(self) -> Path:
        return self.log_path or self.path.with_name(self.path.stem + ".log.jsonl")

    @property
    def state(self) -> Path:
        return self.path.with_name(self.path.stem + ".state.json")

    def now(self) -> datetime:
        """Current time in the schedule's zone (naive local time when no timezone is configured)."""
        return datetime.now(self.tz) if self.tz else datetime.now()


def load_jobs(path: Path) -> JobsFile:
    """Parse and check a jobs file; every mistake is a ConfigError that names the job and the key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"jobs file {path} does not exist (see `matlake scheduler --help` and the README)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read jobs file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"jobs file {path} is not valid TOML: {exc}") from None
    path = path.resolve()
    unknown = set(data) - {"scheduler", "jobs"}
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {sorted(unknown)}: use [scheduler] and [[jobs]]")
    settings = data.get("scheduler", {})
    _check_keys(settings, SCHEDULER_KEYS, f"{path}: [scheduler]")
    raw_jobs = data.get("jobs", [])
    if not isinstance(raw_jobs, list) or not raw_jobs:
        raise ConfigError(f"{path}: no jobs: add at least one [[jobs]] table")
    jobs = tuple(_job(path, i, spec) for i, spec in enumerate(raw_jobs))
    names = [j.name for j in jobs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{path}: job names must be unique: {', '.join(duplicates)}")
    tz = settings.get("timezone")
    if tz is not None:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{path}: [scheduler] timezone {tz!r} is not a known time zone") from None
    log = settings.get("log")
    return JobsFile(
        path=path, jobs=jobs, timezone=tz, log_path=(path.parent / log) if log else None,
        snapshots=bool(settings.get("snapshots", True)), keep_snapshots=int(settings.get("keep_snapshots", 3)),
        stop_grace_s=float(settings.get("stop_grace_s", 60.0)),
        hook_timeout_s=float(settings.get("hook_timeout_s", 60.0)),
        snapshot_timeout_s=float(settings.get("snapshot_timeout_s", 60.0)),
    )


def _job(path: Path, index: int, spec: Any) -> Job:
    where = f"{path}: job {index + 1}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} is not a table")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where} needs a name")
    where = f"{path}: job {name!r}"
    _check_keys(spec, JOB_KEYS, where)
    for key in ("source", "schedule"):
        if not isinstance(spec.get(key), str) or not spec[key].strip():
            raise ConfigError(f"{where} needs a {key}")
    if not croniter.is_valid(spec["schedule"]):
        raise ConfigError(f"{where}: schedule {spec['schedule']!r} is not a cron expression "
                          "(5 fields, or 6 with seconds last: '*/10 * * * * *' is every 10 s)")
    inputs = spec.get("input", [])
    inputs = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(inputs, list) or not all(isinstance(p, str) for p in inputs):
        raise ConfigError(f"{where}: input must be a path or a list of paths/globs")
    download = bool(spec.get("download", False))
    if download and inputs:
        raise ConfigError(f"{where}: give input paths or download = true, not both")
    mode = spec.get("mode", "full")
    if mode not in {"full", "partial"}:
        raise ConfigError(f"{where}: mode {mode!r} must be full or partial")
    module = spec.get("module")
    if module is not None:
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is None:
            raise ConfigError(f"{where}: module {module!r} cannot be imported (is it on PYTHONPATH?)")
    else:
        from matlake.ingest import sources

        if spec["source"] not in sources.SOURCE_MODULES:
            known = ", ".join(sorted(sources.SOURCE_MODULES))
            raise ConfigError(f"{where}: unknown source {spec['source']!r} (known: {known}; or give module = ...)")
    numbers = {}
    for key, default, minimum in (("retries", 0, 0), ("backoff_s", 30.0, 0), ("max_backoff_s", 3600.0, 0),
                                  ("timeout", 6 * 3600.0, 0.001), ("batch_size", None, 1)):
        value = spec.get(key, default)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum):
            raise ConfigError(f"{where}: {key} must be a number >= {minimum}")
        numbers[key] = value
    hook = spec.get("on_failure")
    if hook is not None and not isinstance(hook, str):
        raise ConfigError(f"{where}: on_failure must be a shell command (a string)")
    return Job(
        name=name, source=spec["source"], schedule=spec["schedule"], input=tuple(inputs), download=download,
        release=spec.get("release"), module=module, mode=mode, retries=int(numbers["retries"]),
        backoff_s=float(numbers["backoff_s"]), max_backoff_s=float(numbers["max_backoff_s"]),
        timeout_s=float(numbers["timeout"]), on_failure=hook,
        batch_size=None if numbers["batch_size"] is None else int(numbers["batch_size"]),
    )


def _check_keys(spec: dict, allowed: set[str], where: str) -> None:
    unknown = set(spec) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}")


def next_fire_times(job: Job, after: datetime, n: int = 3) -> list[datetime]:
    """The next ``n`` times ``job`` fires after ``after``."""
    it = croniter(job.schedule, after)
    return [it.get_next(datetime) for _ in range(n)]


def resolve_inputs(job: Job, base: Path) -> list[Path]:
    """The job's files now: globs expanded (relative to the jobs file's folder), sorted; none found is an error."""
    files: list[Path] = []
    for pattern in job.input:
        full = pattern if os.path.isabs(pattern) else str(base / pattern)
        if glob.has_magic(full):
            matches = sorted(Path(p) for p in glob.glob(full, recursive=True) if Path(p).is_file())
            if not matches:
                raise ConfigError(f"input {pattern!r} matches no files")
            files.extend(matches)
        elif Path(full).is_file():
            files.append(Path(full))
        else:
            raise ConfigError(f"input file {full} does not exist or is not a file")
    return files


# ---- the log ---------------------------------------------------------------------------------------------------


class EventLog:
    """Append-only JSON lines, one per event; small appends with O_APPEND never interleave between processes."""

    MAX_BYTES = 16 << 20

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, event: str, **fields: Any) -> dict:
        """Append one event; past MAX_BYTES the log moves to ``<log>.1`` (one generation kept)."""
        record = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "pid": os.getpid(),
                  "event": event, **fields}
        line = (json.dumps(record, default=str) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.path.stat().st_size > self.MAX_BYTES:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        except OSError:
            pass
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return record

    def read(self) -> list[dict]:
        try:
            lines = self.path.read_text().splitlines()
        except OSError:
            return []
        events = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events

    def last_outcomes(self) -> dict[str, dict]:
        """Per job: the last execution's outcome (succeeded, failed, interrupted) with ``skipped_since``, the
        number of triggers skipped after it (a job that never ran has only that count)."""
        outcomes: dict[str, dict] = {}
        for e in self.read():
            job, event = e.get("job"), e.get("event")
            if not job:
                continue
            if event in {"succeeded", "failed", "interrupted"}:
                outcomes[job] = {**e, "skipped_since": 0}
            elif event == "skipped":
                outcome = outcomes.setdefault(job, {"event": None, "skipped_since": 0})
                outcome["skipped_since"] += int(e.get("count", 1))
        return outcomes


# ---- the service -----------------------------------------------------------------------------------------------


class _StopFlag:
    """Set from a signal handler, so no locks (a threading.Event could deadlock if the signal lands inside wait())."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as the flag is set (checked every 50 ms)."""
        deadline = time.monotonic() + seconds
        while not self._set:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, 0.05))
        return True


@dataclass
class AttemptResult:
    status: str  # succeeded, failed, timeout, interrupted
    error: str | None = None
    runs: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def run_ids(self) -> list[int]:
        return sorted({r["run_id"] for r in self.runs})


class Scheduler:
    """The long-running service behind ``matlake scheduler run``."""

    def __init__(self, jobs: JobsFile, *, url: str | None = None, say: Callable[[str], None] = print) -> None:
        self.jobs = jobs
        self.url = url or get_settings().resolved_database_url
        self.lock = DatabaseLock(self.url)  # ConfigError for in-memory DuckDB
        self.log = EventLog(jobs.log)
        self.say = say
        self.stop = _StopFlag()
        self.stop_signal: str | None = None
        self.interrupted: tuple[str, list[int], bool] | None = None  # job, its runs, stopped while waiting to retry

    # -- main loop --

    def run(self) -> str:
        """Run until SIGTERM or SIGINT; returns the closing message. Signals only set a flag (no half-done work)."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self._loop()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stop_signal = signal.Signals(signum).name
        self.stop.set()

    def _loop(self) -> str:
        jobs = self.jobs.jobs
        self.log.write("scheduler_started", jobs=[j.name for j in jobs], database=_display(self.url),
                       host=socket.gethostname())
        self.say(f"scheduler started: {len(jobs)} job(s) from {self.jobs.path}, database {_display(self.url)}, "
                 f"log {self.jobs.log}")
        self._publish_snapshot(None, initial=True)
        now = self.jobs.now()
        upcoming = {j.name: next_fire_times(j, now, 1)[0] for j in jobs}
        for j in jobs:
            self.say(f"  {j.name}: next at {_fmt(upcoming[j.name])} ({j.schedule})")
        while not self.stop.is_set():
            now = self.jobs.now()
            due = sorted((upcoming[j.name], i) for i, j in enumerate(jobs) if upcoming[j.name] <= now)
            if not due:
                wait = (min(upcoming.values()) - now).total_seconds()
                self.stop.wait(max(0.0, min(wait, 1.0)))
                continue
            fire, index = due[0]
            job = jobs[index]
            started = self.jobs.now()
            self._execute(job, fire)
            ended = self.jobs.now()
            upcoming[job.name] = next_fire_times(job, max(fire, started), 1)[0]
            # Triggers that came due while this execution held the database are skipped, never queued.
            for other in jobs:
                if upcoming[other.name] <= started or upcoming[other.name] > ended:
                    continue
                missed = []
                while upcoming[other.name] <= ended:
                    missed.append(upcoming[other.name])
                    upcoming[other.name] = next_fire_times(other, upcoming[other.name], 1)[0]
                if not self.stop.is_set():
                    self._skip(other, missed, f"overlap: job {job.name!r} was running in this scheduler")
        signame = self.stop_signal or "stop"
        if self.interrupted is None:
            message = f"scheduler stopped by {signame}; no job was running"
        else:
            name, run_ids, waiting = self.interrupted
            runs = ", ".join(str(r) for r in run_ids) or "none started"
            message = f"scheduler stopped by {signame} during job {name!r} " + (
                f"while it waited to retry (runs: {runs}); its next trigger runs it again" if waiting else
                f"(runs: {runs}): the batch in flight was rolled back, committed batches stay, and the job's next "
                "trigger resumes the run")
        self.log.write("scheduler_stopped", signal=signame, interrupted_job=self.interrupted and self.interrupted[0])
        return message

    def _skip(self, job: Job, fires: list[datetime], reason: str, **extra: Any) -> None:
        self.log.write("skipped", job=job.name, fires=[_fmt(f) for f in fires], count=len(fires), reason=reason,
                       **extra)
        self.say(f"{_fmt(self.jobs.now())} {job.name}: skipped {len(fires)} trigger(s) ({_fmt(fires[0])}): {reason}")

    # -- one execution --

    def _execute(self, job: Job, fire: datetime) -> None:
        if not self.lock.acquire(owner=f"job {job.name}"):
            holder = self.lock.holder()
            self._skip(job, [fire], f"database locked by {holder}", holder=holder)
            return
        failed: tuple[str, AttemptResult, int] | None = None
        try:
            if not self._claim(job, fire):
                self._skip(job, [fire], "this trigger already ran in another scheduler process")
                return
            self.log.write("started", job=job.name, fire=_fmt(fire), source=job.source)
            self.say(f"{_fmt(self.jobs.now())} {job.name}: started (trigger {_fmt(fire)})")
            outcome, result, attempts = self._attempts(job, fire)
            if outcome == "succeeded":
                self.log.write("succeeded", job=job.name, fire=_fmt(fire), attempts=attempts, runs=result.runs,
                               run_ids=result.run_ids, seconds=round(result.seconds, 3))
                self.say(f"{_fmt(self.jobs.now())} {job.name}: succeeded, {_runs_text(result.runs)}")
                self._publish_snapshot(job)
            elif outcome in ("interrupted", "waiting"):
                waiting = outcome == "waiting"
                self.interrupted = (job.name, result.run_ids, waiting)
                self.log.write("interrupted", job=job.name, fire=_fmt(fire), attempts=attempts,
                               run_ids=result.run_ids, error=result.error, while_waiting_to_retry=waiting)
            else:
                failed = (outcome, result, attempts)
        finally:
            self.lock.release()
        if failed is not None:
            self._failed(job, fire, *failed)

    def _claim(self, job: Job, fire: datetime) -> bool:
        """Record that this trigger runs (under the lock); False when another scheduler process ran it already."""
        key = f"{_display(self.url)}|{job.name}"
        state: dict[str, Any] = {}
        try:
            state = json.loads(self.jobs.state.read_text())
        except (OSError, ValueError):
            pass
        if state.get(key, {}).get("fire") == _fmt(fire):
            return False
        state[key] = {"fire": _fmt(fire), "pid": os.getpid(), "host": socket.gethostname()}
        tmp = self.jobs.state.with_name(f".{self.jobs.state.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=1) + "\n")
        os.replace(tmp, self.jobs.state)
        return True

    def _attempts(self, job: Job, fire: datetime) -> tuple[str, AttemptResult, int]:
        """Attempts with exponential backoff; a failure's result lists the runs of every attempt."""
        result = AttemptResult("failed")
        runs: dict[int, dict] = {}
        for attempt in range(1, job.retries + 2):
            try:
                files = resolve_inputs(job, self.jobs.path.parent)
            except ConfigError as exc:
                result = AttemptResult("failed", str(exc))
            else:
                result = self._spawn(job, files)
            self.log.write("attempt", job=job.name, fire=_fmt(fire), attempt=attempt, status=result.status,
                           error=result.error, run_ids=result.run_ids, seconds=round(result.seconds, 3))
            if result.status == "succeeded":
                return "succeeded", result, attempt
            runs.update({r["run_id"]: r for r in result.runs})
            result.runs = [runs[k] for k in sorted(runs)]
            if self.stop.is_set():
                return "interrupted", result, attempt
            self.say(f"{_fmt(self.jobs.now())} {job.name}: attempt {attempt} {result.status}: {result.error}")
            if attempt <= job.retries:
                delay = min(job.backoff_s * 2 ** (attempt - 1), job.max_backoff_s)
                self.log.write("retry", job=job.name, fire=_fmt(fire), attempt=attempt + 1, delay_s=delay)
                if self.stop.wait(delay):
                    return "waiting", result, attempt
        return "failed", result, job.retries + 1

    def _spawn(self, job: Job, files: list[Path]) -> AttemptResult:
        """One attempt in a worker process that inherits the database lock; SIGTERM on timeout or shutdown."""
        spec = {**asdict(job), "input": [str(p) for p in files]}
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="matlake-job-") as tmp:
            result_path = Path(tmp) / "result.json"
            fds = (self.lock.fd,) if self.lock.fd is not None else ()
            proc = subprocess.Popen(
                [sys.executable, "-m", "matlake.scheduler", "--attempt", json.dumps(spec), str(result_path)],
                pass_fds=fds, start_new_session=True,
            )
            why, terminated_at = None, None
            while True:
                try:
                    rc = proc.wait(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = time.monotonic()
                if terminated_at is None and (self.stop.is_set() or now - started > job.timeout_s):
                    why = "stop" if self.stop.is_set() else "timeout"
                    proc.send_signal(signal.SIGTERM)
                    terminated_at = now
                elif terminated_at is not None and now - terminated_at > self.jobs.stop_grace_s:
                    proc.kill()  # batches are atomic: a killed worker leaves committed batches only
            try:
                data = json.loads(result_path.read_text())
            except (OSError, ValueError):
                data = {"status": "failed", "error": f"worker process ended with exit code {rc} and no result"}
        result = AttemptResult(data.get("status", "failed"), data.get("error"), data.get("runs", []),
                               time.monotonic() - started)
        if why == "timeout" and result.status != "succeeded":
            result.status = "timeout"
            result.error = (f"timed out after {job.timeout_s:g} s: the batch in flight was rolled back and the next "
                            "attempt resumes the run")
        return result

    def _failed(self, job: Job, fire: datetime, outcome: str, result: AttemptResult, attempts: int) -> None:
        self.log.write("failed", job=job.name, fire=_fmt(fire), attempts=attempts, error=result.error,
                       run_ids=result.run_ids)
        self.say(f"{_fmt(self.jobs.now())} {job.name}: failed after {attempts} attempt(s): {result.error}")
        if not job.on_failure:
            return
        env = {**os.environ, "MATLAKE_JOB": job.name, "MATLAKE_JOB_SOURCE": job.source,
               "MATLAKE_JOB_ERROR": result.error or "", "MATLAKE_JOB_ATTEMPTS": str(attempts),
               "MATLAKE_JOB_RUN_IDS": " ".join(str(r) for r in result.run_ids), "MATLAKE_JOB_FIRE": _fmt(fire)}
        try:
            done = subprocess.run(job.on_failure, shell=True, env=env, cwd=self.jobs.path.parent,
                                  timeout=self.jobs.hook_timeout_s, capture_output=True, text=True)
            rc, tail = done.returncode, (done.stderr or done.stdout)[-500:]
        except subprocess.TimeoutExpired:
            rc, tail = None, f"killed after {self.jobs.hook_timeout_s:g} s"
        self.log.write("on_failure", job=job.name, command=job.on_failure, returncode=rc, output=tail)
        if rc != 0:
            self.say(f"{job.name}: on_failure command exited with {rc}: {tail.strip()}")

    def _publish_snapshot(self, job: Job | None, *, initial: bool = False) -> None:
        """Publish a read-only snapshot for notebooks (DuckDB files only); a failure is logged, not fatal."""
        path = db.duckdb_path(self.url)
        if path is None or not self.jobs.snapshots or not path.exists():
            return
        from . import snapshots

        if initial and not self.lock.acquire(owner="initial snapshot"):
            return
        try:
            snap = snapshots.publish(path, job=job.name if job else None, keep=self.jobs.keep_snapshots,
                                     timeout_s=self.jobs.snapshot_timeout_s, require_complete=initial)
        except Exception as exc:  # the job's data is committed; readers keep the previous snapshot
            self.log.write("snapshot_failed", job=job.name if job else None, error=f"{type(exc).__name__}: {exc}")
            self.say(f"snapshot not published: {exc}")
            return
        finally:
            if initial:
                self.lock.release()
        if snap is not None:
            self.log.write("snapshot", job=job.name if job else None, file=snap.file, run_id=snap.run_id)


def _fmt(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _display(url: str) -> str:
    import sqlalchemy as sa

    return sa.engine.make_url(url).render_as_string(hide_password=True)


def _runs_text(runs: list[dict]) -> str:
    return "; ".join(f"run {r['run_id']} {r['dataset']}: read {r['n_read']}, inserted {r['n_inserted']}, "
                     f"updated {r['n_updated']}, unchanged {r['n_unchanged']}, rejected {r['n_rejected']}"
                     for r in runs) or "no runs"


# ---- the worker process ----------------------------------------------------------------------------------------


class _Terminated(BaseException):  # like KeyboardInterrupt: no library's `except Exception` swallows it
    pass


def _attempt(spec: dict) -> dict:
    """Ingest once, like ``matlake ingest``; returns the result record for the scheduler."""
    from matlake.errors import MatlakeError
    from matlake.ingest import sources
    from matlake.ingest.framework import RunInterrupted, ingest

    started = datetime.now(timezone.utc).replace(tzinfo=None)
    try:
        if spec.get("module"):
            sources.register(spec["source"], spec["module"])
        module = sources.get(spec["source"])
        files, release = [Path(p) for p in spec["input"]], spec.get("release")
        if spec.get("download"):
            from matlake.ingest import download

            remote = download.get_release(spec["source"], release)
            files, release = download.fetch_release(remote), remote.tag
        if not files and hasattr(module, "default_files"):
            files = module.default_files()
        engine = db.create_engine()
        db.upgrade(engine)
        kwargs = {"batch_size": spec["batch_size"]} if spec.get("batch_size") else {}
        summaries = ingest(module, files, engine=engine, release=release, mode=spec["mode"], **kwargs)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # done: report success even if asked to stop now
    except RunInterrupted as exc:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop request is enough: report it
        return {"status": "interrupted", "error": str(exc), "runs": _runs_since(started)}
    except (KeyboardInterrupt, _Terminated) as exc:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _mark_interrupted()
        return {"status": "interrupted", "error": str(exc) or "terminated", "runs": _runs_since(started)}
    except MatlakeError as exc:
        return {"status": "failed", "error": str(exc), "runs": _runs_since(started)}
    except Exception as exc:
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "runs": _runs_since(started)}
    return {"status": "succeeded", "runs": [
        {"run_id": s.run_id, "dataset": s.dataset, "status": s.status, "n_read": s.n_read,
         "n_inserted": s.n_inserted, "n_updated": s.n_updated, "n_unchanged": s.n_unchanged,
         "n_rejected": s.n_rejected, "n_withdrawn": s.n_withdrawn, "resumed": s.resumed} for s in summaries
    ]}


def _mark_interrupted() -> None:
    """SIGTERM outside the framework's own handler (before streaming began, or while the run row was being closed)
    leaves this worker's run 'running'; mark it 'interrupted' as the framework would. Its counters already match
    its committed batches, and the next attempt resumes it either way."""
    import sqlalchemy as sa

    try:
        with db.connect(db.create_engine(), timeout_s=2) as conn:
            conn.execute(sa.text(
                "UPDATE ingest_run SET status = 'interrupted', finished_at = :now, "
                "error = 'interrupted by signal; the next attempt resumes the run' "
                "WHERE pid = :pid AND host = :host AND status = 'running'"),
                {"now": datetime.now(timezone.utc).replace(tzinfo=None), "pid": os.getpid(),
                 "host": socket.gethostname()})
    except Exception:  # best effort: a 'running' row of a dead process is resumed all the same
        pass


def _runs_since(started: datetime) -> list[dict]:
    """The runs this worker process started or resumed (best effort: the database may be unreachable)."""
    import sqlalchemy as sa

    try:
        engine = db.create_engine()
        with db.connect(engine, timeout_s=2) as conn:
            rows = conn.execute(sa.text(
                "SELECT id, dataset, status, n_read, n_inserted, n_updated, n_unchanged, n_rejected, n_withdrawn "
                "FROM ingest_run WHERE pid = :pid AND host = :host AND (finished_at IS NULL OR finished_at >= :t) "
                "ORDER BY id"), {"pid": os.getpid(), "host": socket.gethostname(), "t": started}).all()
    except Exception:
        return []
    return [{"run_id": r.id, "dataset": r.dataset, "status": r.status, "n_read": r.n_read, "n_inserted": r.n_inserted,
             "n_updated": r.n_updated, "n_unchanged": r.n_unchanged, "n_rejected": r.n_rejected,
             "n_withdrawn": r.n_withdrawn} for r in rows]


def _worker_main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "--attempt":
        print("usage: python -m matlake.scheduler --attempt JOB_JSON RESULT_FILE (started by `matlake scheduler run`)",
              file=sys.stderr)
        return 2

    def on_term(signum: int, frame: object) -> None:  # outside the framework's own handler
        raise _Terminated("terminated by signal")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the scheduler decides; Ctrl-C reaches it, not us
    result = _attempt(json.loads(argv[1]))
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    out = Path(argv[2])
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, default=str))
    os.replace(tmp, out)
    return {"succeeded": 0, "interrupted": 130}.get(result["status"], 1)


if __name__ == "__main__":
    code = _worker_main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown: duckdb's extension prints "nanobind: leaked" noise there
