"""The ingestion framework: runs, rejects, batching, versioning and idempotent bulk loads for every source.

A source module supplies ``info``, ``dataset(path)``, ``read(path)`` and ``normalise(raw)``; :func:`ingest` does the
rest. Each batch commits atomically together with the run's counters, so a run killed at any moment leaves a
consistent database, and running the same input again resumes the interrupted run and ends in the same state as an
uninterrupted one (same run id, same rows, same counts).

Optional hooks of a source module: ``default_files() -> list[Path]`` (what to read when no path is given),
``expand(directory) -> list[Path]`` (the input files of a directory given as a path; without it a directory is an
error), and ``is_annotation(dataset) -> bool``: True for datasets whose records attach facts to materials by id alone
(a symmetry table, model predictions). Their records may have ``formula=None``: the material is created if it is new,
and its revision in that dataset has no composition. Elsewhere a missing formula is an ``empty_formula`` reject.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import json
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import orjson
import pyarrow as pa
import sqlalchemy as sa

from matlake import db
from matlake.errors import InputError, MatlakeError
from matlake.schema.enums import RevisionStatus, RunMode, RunStatus
from matlake.version import code_version

from .files import file_fingerprint
from .formulas import FormulaError, ParsedComposition, parse_formula
from .records import MaterialRecord, RawRecord, RecordRejected

EXCERPT_CHARS = 2000
HEAVY_BATCH = 20_000
READ_ERRORS = (OSError, EOFError, ValueError, UnicodeDecodeError, csv.Error)


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What the ``source`` table says about a source."""

    name: str
    title: str
    licence: str
    citation: str
    homepage: str | None = None


class SourceModule(Protocol):
    """The per-source contract: parsing and mapping only."""

    info: SourceInfo

    def dataset(self, path: Path) -> str: ...

    def read(self, path: Path) -> Iterator[RawRecord]: ...

    def normalise(self, raw: RawRecord) -> MaterialRecord: ...


class RunInterrupted(MatlakeError):
    """SIGTERM or Ctrl-C during a run: the batch in flight rolled back, committed batches stay."""

    exit_code = 130


@dataclass
class RunSummary:
    """What one run did; ``n_read == n_inserted + n_updated + n_unchanged + n_rejected`` always."""

    run_id: int
    source: str
    dataset: str
    release: str
    status: str
    n_read: int = 0
    n_inserted: int = 0
    n_updated: int = 0
    n_unchanged: int = 0
    n_rejected: int = 0
    n_withdrawn: int = 0
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    resumed: bool = False

    @property
    def n_accepted(self) -> int:
        return self.n_inserted + self.n_updated + self.n_unchanged


def ingest(
    module: SourceModule,
    paths: Iterable[str | Path],
    *,
    engine: sa.Engine | None = None,
    release: str | None = None,
    mode: RunMode | str = RunMode.FULL,
    batch_size: int = 50_000,
    progress: bool = False,
    record_time_limit_s: float | None = None,
) -> list[RunSummary]:
    """Ingest ``paths`` (files, or directories the module expands) with ``module``: one run per dataset.

    A batch (one transaction) holds ``batch_size`` records, of which at most ``HEAVY_BATCH`` carry structures,
    relaxation steps or recipes, whose facts dominate memory.
    """
    paths = expand_paths(module, paths)
    engine = engine or db.create_engine()
    fingerprints = [file_fingerprint(p) for p in paths]
    tag = release or "sha256-" + hashlib.sha256("".join(f["sha256"] for f in fingerprints).encode()).hexdigest()[:16]
    by_dataset: dict[str, list[Path]] = {}
    for p in paths:
        by_dataset.setdefault(module.dataset(p), []).append(p)
    with db.connect(engine) as conn:
        db.check_schema(conn)
    summaries = []
    with _young_collections_only():
        for dataset, files in by_dataset.items():
            run = _Run(engine, module, dataset, files, fingerprints, tag, RunMode(mode), batch_size,
                       record_time_limit_s)
            summaries.append(run.execute(progress=progress))
    return summaries


def expand_paths(module: SourceModule, paths: Iterable[str | Path]) -> list[Path]:
    """The input files of ``paths``: files as given, directories through the module's ``expand`` hook."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            expand = getattr(module, "expand", None)
            if expand is None:
                raise InputError(f"{p} is a directory and source {module.info.name} reads files only: give its files")
            found = [Path(f) for f in expand(p)]
            if not found:
                raise InputError(f"directory {p} holds no input files for source {module.info.name}")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"input file {p} does not exist or is not a file")
    if not files:
        raise InputError(f"no input files given for source {module.info.name}")
    return files


# ---- one run ----------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Current:
    revision_id: int
    content_hash: str
    status: str
    valid_from_run_id: int
    composition_id: int | None
    formula_raw: str | None


class _Run:
    def __init__(self, engine, module, dataset, files, fingerprints, tag, mode, batch_size, time_limit_s) -> None:
        self.engine = engine
        self.module = module
        self.dataset = dataset
        self.files = files
        self.fingerprints = fingerprints
        self.tag = tag
        self.mode = mode
        self.batch_size = batch_size
        self.time_limit_s = time_limit_s
        self.counts: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.seen: set[str] = set()
        self.compositions: dict[str, int] = {}  # formula -> id, of the compositions this run has looked up
        self.materials: dict[str, int] = {}
        annotation = getattr(module, "is_annotation", None)
        self.annotation = bool(annotation and annotation(dataset))
        self.current: dict[int, _Current] = {}
        self.closed_by_this_run: set[int] = set()
        self.incomplete_input = False
        self.resumed = False

    # -- lifecycle --

    def execute(self, *, progress: bool) -> RunSummary:
        started = time.perf_counter()
        conn = db.open_connection(self.engine)
        try:
            # from the first statement: a SIGTERM anywhere rolls back the open transaction
            with _interruptible() as terminated:
                with conn.begin():
                    self._prepare(conn)
                    skipped = not self.resumed and self._carry_over_identical_input(conn)
                    if not skipped:
                        self._load_state(conn)
                status, error = RunStatus.SUCCEEDED, None
                try:
                    if not skipped:
                        self._stream(conn, progress)
                    if self.mode is RunMode.FULL and not self.incomplete_input and not skipped:
                        with conn.begin():
                            self._withdraw_absent(conn)
                except (RunInterrupted, KeyboardInterrupt):
                    status, error = RunStatus.INTERRUPTED, "interrupted by signal; run the same command to resume"
                except Exception as exc:  # the run row must say it failed before the error propagates
                    if not terminated.is_set():
                        status, error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
                        self._finish(conn, status, error)
                        raise
                    # the signal came while DuckDB ran a statement: DuckDB cancels it and raises its own
                    # RuntimeError('Query interrupted') in place of ours. A stop all the same: keep it resumable
                    status, error = RunStatus.INTERRUPTED, "interrupted by signal; run the same command to resume"
                self._finish(conn, status, error)
        finally:
            conn.close()
        summary = RunSummary(
            run_id=self.run_id, source=self.module.info.name, dataset=self.dataset, release=self.tag,
            status=str(status), n_read=self.counts["read"], n_inserted=self.counts["inserted"],
            n_updated=self.counts["updated"], n_unchanged=self.counts["unchanged"],
            n_rejected=self.counts["rejected"], n_withdrawn=self.counts["withdrawn"],
            rejects_by_reason=dict(self.reasons), seconds=time.perf_counter() - started, resumed=self.resumed,
        )
        if status is RunStatus.INTERRUPTED:
            raise RunInterrupted(f"run {self.run_id} interrupted after {summary.n_read} records; rerun to resume")
        return summary

    def _prepare(self, conn: sa.Connection) -> None:
        info = self.module.info
        source_id = conn.execute(sa.text("SELECT id FROM source WHERE name = :n"), {"n": info.name}).scalar()
        if source_id is None:
            source_id = conn.execute(
                sa.text(
                    "INSERT INTO source (name, title, licence, citation, homepage, created_at) "
                    "VALUES (:n, :t, :l, :c, :h, :now) RETURNING id"
                ),
                {"n": info.name, "t": info.title, "l": info.licence, "c": info.citation, "h": info.homepage,
                 "now": _now()},
            ).scalar()
        self.source_id = source_id
        files_json = [
            {**fp, "name": Path(fp["name"]).name} for fp in self.fingerprints if Path(fp["name"]) in set(self.files)
        ]
        release = conn.execute(
            sa.text("SELECT id, files FROM source_release WHERE source_id = :s AND tag = :t"),
            {"s": source_id, "t": self.tag},
        ).first()
        if release is None:
            self.release_id = conn.execute(
                sa.text(
                    "INSERT INTO source_release (source_id, tag, retrieved_at, files, created_at) "
                    "VALUES (:s, :t, :now, :f, :now) RETURNING id"
                ),
                {"s": source_id, "t": self.tag, "f": json.dumps(files_json), "now": _now()},
            ).scalar()
        else:
            self.release_id = release.id
            known = {f["sha256"] for f in _json(release.files) or []}
            new = [f for f in files_json if f["sha256"] not in known]
            if new:
                conn.execute(
                    sa.text("UPDATE source_release SET files = :f WHERE id = :id"),
                    {"f": json.dumps((_json(release.files) or []) + new), "id": release.id},
                )
        self._start_or_resume(conn)

    def _start_or_resume(self, conn: sa.Connection) -> None:
        previous = conn.execute(
            sa.text(
                "SELECT id, status, host, pid, attempts FROM ingest_run WHERE source_id = :s AND release_id = :r "
                "AND dataset = :d AND status IN ('running', 'interrupted') ORDER BY id DESC LIMIT 1"
            ),
            {"s": self.source_id, "r": self.release_id, "d": self.dataset},
        ).first()
        params = {"files": [str(p) for p in self.files], "mode": str(self.mode), "batch_size": self.batch_size,
                  "inputs": self._input_checksums(), "normaliser": self._normaliser()}
        if previous is not None and previous.status == RunStatus.RUNNING and _alive(previous.host, previous.pid):
            raise db.DatabaseLockedError(
                f"run {previous.id} of {self.module.info.name}/{self.dataset} is still in progress "
                f"(PID {previous.pid} on {previous.host})"
            )
        if previous is not None:
            self.run_id = previous.id
            self.resumed = True
            conn.execute(sa.text("DELETE FROM ingest_reject WHERE run_id = :r"), {"r": self.run_id})
            conn.execute(
                sa.text(
                    "UPDATE ingest_run SET status = 'running', host = :h, pid = :p, attempts = :a, error = NULL, "
                    "n_read = 0, n_inserted = 0, n_updated = 0, n_unchanged = 0, n_rejected = 0, n_withdrawn = 0, "
                    "finished_at = NULL WHERE id = :id"
                ),
                {"h": socket.gethostname(), "p": os.getpid(), "a": previous.attempts + 1, "id": self.run_id},
            )
            return
        self.run_id = conn.execute(
            sa.text(
                "INSERT INTO ingest_run (source_id, release_id, dataset, mode, status, started_at, parameters, "
                "code_version, host, pid, attempts, n_read, n_inserted, n_updated, n_unchanged, n_rejected, "
                "n_withdrawn) VALUES (:s, :r, :d, :m, 'running', :now, :params, :cv, :h, :p, 1, 0, 0, 0, 0, 0, 0) "
                "RETURNING id"
            ),
            {"s": self.source_id, "r": self.release_id, "d": self.dataset, "m": str(self.mode), "now": _now(),
             "params": json.dumps(params), "cv": code_version(), "h": socket.gethostname(), "p": os.getpid()},
        ).scalar()

    def _normaliser(self) -> str:
        """Fingerprint of the code that turns these files into rows: the source module and the framework."""
        return _code_fingerprint(getattr(self.module, "__file__", None) or type(self.module).__module__)

    def _input_checksums(self) -> list[str]:
        wanted = {str(p) for p in self.files}
        return sorted(fp["sha256"] for fp in self.fingerprints if fp["name"] in wanted)

    def _carry_over_identical_input(self, conn: sa.Connection) -> bool:
        """When the dataset's latest run succeeded on byte-identical files with the same code and mode, every
        record would be unchanged: record this run as such (carrying its rejects over) without re-reading."""
        last = conn.execute(sa.text(
            "SELECT id, status, mode, code_version, parameters, n_read, n_inserted, n_updated, n_unchanged, "
            "n_rejected FROM ingest_run WHERE source_id = :s AND dataset = :d AND id < :r ORDER BY id DESC LIMIT 1"
        ), {"s": self.source_id, "d": self.dataset, "r": self.run_id}).first()
        if last is None or last.status != RunStatus.SUCCEEDED or last.mode != str(self.mode):
            return False
        previous = _json(last.parameters) or {}
        if previous.get("inputs") != self._input_checksums() or previous.get("normaliser") != self._normaliser():
            return False
        conn.execute(sa.text(
            "INSERT INTO ingest_reject (run_id, file, position, record_key, reason_code, message, raw_excerpt) "
            "SELECT :r, file, position, record_key, reason_code, message, raw_excerpt FROM ingest_reject "
            "WHERE run_id = :last ORDER BY id"
        ), {"r": self.run_id, "last": last.id})
        self.counts.update({"read": last.n_read, "unchanged": last.n_inserted + last.n_updated + last.n_unchanged,
                            "rejected": last.n_rejected})
        self.reasons.update(dict(conn.execute(sa.text(
            "SELECT reason_code, count(*) FROM ingest_reject WHERE run_id = :r GROUP BY reason_code"
        ), {"r": self.run_id}).tuples().all()))
        self._save_counts(conn)
        conn.execute(sa.text("UPDATE ingest_run SET parameters = :p WHERE id = :r"), {
            "r": self.run_id, "p": json.dumps({**(_json(last.parameters) or {}), "files": [str(p) for p in self.files],
                                               "identical_to_run": last.id})})
        return True

    def _load_state(self, conn: sa.Connection) -> None:
        """The source's record ids and the dataset's current revisions (compositions are looked up per batch)."""
        self.materials = dict(db.fetch_pairs(
            conn, "SELECT source_record_id, id FROM material WHERE source_id = :s", {"s": self.source_id}
        ))
        rows = db.fetch_pairs(
            conn,
            "SELECT r.material_id, r.id, r.content_hash, r.status, r.valid_from_run_id, r.composition_id, "
            "r.formula_raw FROM material_revision r JOIN material m ON m.id = r.material_id "
            "WHERE m.source_id = :s AND r.dataset = :d AND r.valid_to_run_id IS NULL",
            {"s": self.source_id, "d": self.dataset},
        )
        self.current = {r[0]: _Current(*r[1:]) for r in rows}
        if self.resumed:
            self.closed_by_this_run = set(
                conn.execute(
                    sa.text("SELECT material_id FROM material_revision WHERE dataset = :d AND valid_to_run_id = :r"),
                    {"d": self.dataset, "r": self.run_id},
                ).scalars()
            )

    def _finish(self, conn: sa.Connection, status: RunStatus, error: str | None) -> None:
        try:
            with conn.begin():
                conn.execute(
                    sa.text("UPDATE ingest_run SET status = :st, finished_at = :now, error = :e WHERE id = :id"),
                    {"st": str(status), "now": _now(), "e": error, "id": self.run_id},
                )
        except sa.exc.SQLAlchemyError:
            pass  # the database itself is failing; the run row keeps 'running' and the next run resumes it

    # -- reading --

    def _stream(self, conn: sa.Connection, progress: bool) -> None:
        batch: list[tuple[MaterialRecord, ParsedComposition | None]] = []
        rejects: list[dict[str, Any]] = []
        heavy = 0
        with _progress(progress, f"{self.module.info.name}/{self.dataset}") as tick:
            for path in self.files:
                n_in_file = 0
                rejected_before = self.counts["rejected"]
                for raw in self._read(path, rejects):
                    n_in_file += 1
                    self.counts["read"] += 1
                    tick()
                    accepted = self._normalise(raw, rejects)
                    if accepted is not None:
                        batch.append(accepted)
                        record = accepted[0]
                        if record.structures or record.relaxation_steps or record.recipes:
                            heavy += 1
                    if len(batch) + len(rejects) >= self.batch_size or heavy >= HEAVY_BATCH:
                        self._flush(conn, batch, rejects)
                        batch, rejects, heavy = [], [], 0
                        _collect_young()
                if n_in_file == 0 and self.counts["rejected"] == rejected_before:
                    self.incomplete_input = True
                    self.counts["read"] += 1
                    self._reject(rejects, RawRecord(str(path), 0, None), "empty_file", f"{path} contains no records")
            self._flush(conn, batch, rejects)

    def _read(self, path: Path, rejects: list[dict[str, Any]]) -> Iterator[RawRecord]:
        iterator = iter(self.module.read(path))
        position = 0
        while True:
            try:
                raw = next(iterator)
            except StopIteration:
                return
            except RecordRejected as exc:
                self.counts["read"] += 1
                self.incomplete_input = True
                self._reject(rejects, RawRecord(str(path), position, None, key=exc.key), exc.reason_code, exc.message)
                return
            except READ_ERRORS as exc:
                self.counts["read"] += 1
                self.incomplete_input = True
                message = f"{path}: cannot read past record {position}: {type(exc).__name__}: {exc}"
                self._reject(rejects, RawRecord(str(path), position, None), "unreadable_file", message)
                return
            position = raw.position + 1
            yield raw

    def _normalise(self, raw: RawRecord, rejects: list[dict[str, Any]]):
        """(record, parsed composition or None for an annotation record), or None when the record is rejected."""
        try:
            if self.time_limit_s:
                with _time_limit(self.time_limit_s):
                    record = self.module.normalise(raw)
            else:
                record = self.module.normalise(raw)
            key = record.record_id
            if not key or not isinstance(key, str):
                raise RecordRejected("missing_id", f"record {raw.position} of {Path(raw.file).name} has no id")
            if key in self.seen:
                raise RecordRejected("duplicate_id", f"record id {key} occurs again (first occurrence kept)", key)
            if record.formula is None and self.annotation:
                parsed = None
            else:
                try:
                    parsed = parse_formula(record.formula)
                except FormulaError as exc:
                    raise RecordRejected(exc.reason_code, str(exc), key) from None
            for st in record.structures:
                parse_formula(st.formula)
        except RecordRejected as exc:
            self._reject(rejects, raw, exc.reason_code, exc.message, exc.key)
            return None
        except FormulaError as exc:
            self._reject(rejects, raw, exc.reason_code, f"structure composition: {exc}")
            return None
        self.seen.add(key)
        return record, parsed

    def _reject(self, rejects, raw: RawRecord, code: str, message: str, key: str | None = None) -> None:
        self.counts["rejected"] += 1
        self.reasons[code] += 1
        excerpt = raw.excerpt if raw.excerpt is not None else (None if raw.payload is None else str(raw.payload))
        rejects.append({
            "run_id": self.run_id, "file": Path(raw.file).name, "position": raw.position,
            "record_key": key or raw.key, "reason_code": code, "message": message,
            "raw_excerpt": None if excerpt is None else excerpt[:EXCERPT_CHARS],
        })

    # -- loading one batch --

    def _flush(self, conn: sa.Connection, batch, rejects) -> None:
        if not batch and not rejects:
            return
        counts_before = self.counts.copy()
        try:
            with conn.begin():
                state = self._load_batch(conn, batch)
                db.bulk_insert(conn, "ingest_reject", _arrow(rejects, REJECT_COLUMNS))
                self._save_counts(conn)
        except BaseException:
            self.counts = counts_before
            raise
        self._apply(state)

    def _load_batch(self, conn: sa.Connection, batch) -> dict:
        self._ensure_compositions(conn, batch)
        materials, current, counts, run_id = self.materials, self.current, self.counts, self.run_id
        new_materials, changed = [], []
        to_write: list[tuple[int | None, MaterialRecord, ParsedComposition | None, str]] = []
        for record, parsed in batch:
            h = _content_hash(record)
            material_id = materials.get(record.record_id)
            cur = current.get(material_id) if material_id is not None else None
            if cur is not None and cur.content_hash == h and cur.status == RevisionStatus.ACTIVE:
                if cur.valid_from_run_id == run_id:
                    counts["updated" if material_id in self.closed_by_this_run else "inserted"] += 1
                else:
                    counts["unchanged"] += 1
                continue
            if material_id is None:
                new_materials.append(record.record_id)
            if cur is None:  # new to this dataset (the material may exist through another dataset)
                counts["inserted"] += 1
            else:
                counts["updated"] += 1
                changed.append(material_id)
            to_write.append((material_id, record, parsed, h))

        ids = db.allocate_ids(conn, "material", len(new_materials))
        new_ids = dict(zip(new_materials, ids))
        db.bulk_insert(conn, "material", pa.table({
            "id": pa.array(ids, pa.int64()),
            "source_id": pa.repeat(pa.scalar(self.source_id, pa.int64()), len(ids)),
            "source_record_id": pa.array(new_materials, pa.string()),
            "first_run_id": pa.repeat(pa.scalar(run_id, pa.int64()), len(ids)),
        }))
        if changed:
            self._close(conn, changed)
        rev_ids = db.allocate_ids(conn, "material_revision", len(to_write))
        id_pools = {
            "structure": iter(db.allocate_ids(conn, "structure", sum(len(r.structures) for _, r, _, _ in to_write))),
            "recipe": iter(db.allocate_ids(conn, "recipe", sum(len(r.recipes) for _, r, _, _ in to_write))),
        }
        compositions, active = self.compositions, str(RevisionStatus.ACTIVE)
        revisions: list[tuple] = []
        rows: dict[str, list[tuple]] = {t: [] for t in CHILD_TABLES}
        updates = {}
        for rev_id, (material_id, record, parsed, h) in zip(rev_ids, to_write):
            if material_id is None:
                material_id = new_ids[record.record_id]
            composition_id = None if parsed is None else compositions[parsed.formula]
            revisions.append((rev_id, material_id, composition_id, record.formula, active, _dump(record.extra), h))
            updates[material_id] = _Current(rev_id, h, active, run_id, composition_id, record.formula)
            if record.structures or record.relaxation_steps or record.superconductors or record.recipes:
                self._children(material_id, record, h, rows, id_pools)
            elif record.properties:  # the common case
                _property_rows(material_id, record, h, rows["property_value"], ())
        db.bulk_insert(conn, "material_revision", _rows_table(revisions, REVISION_COLUMNS, self.dataset, run_id))
        for table, columns in CHILD_TABLES.items():
            if rows[table]:
                db.bulk_insert(conn, table, _rows_table(rows[table], columns, self.dataset, run_id))
        return {"materials": new_ids, "current": updates, "closed": set(changed)}

    def _apply(self, state: dict) -> None:
        self.materials.update(state["materials"])
        self.current.update(state["current"])
        self.closed_by_this_run |= state["closed"]

    def _ensure_compositions(self, conn: sa.Connection, batch) -> None:
        """Ids of every composition of the batch: looked up (once per run), and inserted where new."""
        known = self.compositions
        wanted: dict[str, ParsedComposition] = {}
        for record, parsed in batch:
            if parsed is not None and parsed.formula not in known:
                wanted[parsed.formula] = parsed
            if record.structures or record.recipes:
                for formula in _secondary_formulas(record):
                    try:
                        p = parse_formula(formula)
                    except FormulaError:
                        continue
                    if p.formula not in known:
                        wanted[p.formula] = p
        if not wanted:
            return
        known.update(db.lookup(conn, "composition", "formula", "id", list(wanted)))
        missing = [p for f, p in wanted.items() if f not in known]
        if not missing:
            return
        known.update(db.insert_returning(conn, "composition", pa.table({
            "formula": pa.array([p.formula for p in missing], pa.string()),
            "elements": pa.array([orjson.dumps(p.elements).decode() for p in missing], pa.string()),
            "fractions": pa.array([orjson.dumps(p.fractions).decode() for p in missing], pa.string()),
            "amounts": pa.array([orjson.dumps(p.amounts).decode() for p in missing], pa.string()),
            "chemical_system": pa.array([p.chemical_system for p in missing], pa.string()),
            "n_elements": pa.array([len(p.elements) for p in missing], pa.int64()),
            "is_integer": pa.array([p.is_integer for p in missing], pa.bool_()),
        }), ("formula", "id"), skip_conflicts_on=("formula",)))
        late = [p.formula for p in missing if p.formula not in known]
        if late:  # a concurrent writer (PostgreSQL) inserted them meanwhile
            known.update(db.lookup(conn, "composition", "formula", "id", late))

    def _composition_id(self, formula: str | None) -> int | None:
        """Composition of a formula that may legitimately not parse (symbolic recipe participants)."""
        if not formula:
            return None
        try:
            return self.compositions[parse_formula(formula).formula]
        except FormulaError:
            return None

    def _version(self, content_hash: str) -> dict[str, Any]:
        return {"dataset": self.dataset, "content_hash": content_hash, "valid_from_run_id": self.run_id,
                "valid_to_run_id": None}

    def _children(self, material_id: int, record: MaterialRecord, h: str, rows: dict[str, list], id_pools) -> None:
        """Rows of every fact of one record: tuples in the column order of CHILD_TABLES, content hash last."""
        st_ids = [next(id_pools["structure"]) for _ in record.structures]
        for st_id, st in zip(st_ids, record.structures):
            rows["structure"].append((
                st_id, material_id, self.compositions[parse_formula(st.formula).formula], st.kind,
                st.calculation_id, _dump(st.lattice), _dump(st.species), _dump(st.frac_coords),
                _dump(st.site_properties), st.n_sites, st.volume_a3, st.density_g_cm3, st.is_ordered,
                st.spacegroup_number, _dump(st.extra), h,
            ))
        _property_rows(material_id, record, h, rows["property_value"], st_ids)
        for step in record.relaxation_steps:
            rows["relaxation_step"].append((
                material_id, step.calculation_id, step.step_index, step.energy_ev, step.energy_ev / step.n_sites,
                _dump(step.forces_ev_per_a), _dump(step.stress_kbar), _dump(step.lattice), _dump(step.species),
                _dump(step.frac_coords), h,
            ))
        for sc in record.superconductors:
            rows["superconductor"].append((
                material_id, sc.tc_kelvin, sc.tc_kelvin > 0, sc.lattice_a_angstrom, sc.lattice_b_angstrom,
                sc.lattice_c_angstrom, sc.spacegroup, sc.cuprate_family, sc.n_cuo2_planes, sc.synth_doped,
                sc.icsd_id, _dump(sc.extra), h,
            ))
        recipe_ids = [next(id_pools["recipe"]) for _ in record.recipes]
        for recipe_id, rc in zip(recipe_ids, record.recipes):
            flags = rc.flags
            rows["recipe"].append((
                recipe_id, material_id, rc.doi, rc.synthesis_type, rc.target_formula,
                self._composition_id(rc.target_formula), rc.reaction_string, rc.paragraph_excerpt,
                flags.get("n_precursors", 0), len(rc.operations), bool(rc.operations),
                flags.get("has_conditions", False), flags.get("has_nonstoichiometric", False),
                flags.get("has_organic", False), flags.get("has_pure_element_product", False),
                flags.get("max_temperature_k"), _dump(rc.extra), h,
            ))
            for part in rc.participants:
                rows["recipe_participant"].append((
                    recipe_id, part.role, part.position, part.formula_raw, self._composition_id(part.formula),
                    part.amount_raw, part.amount, part.is_symbolic, part.is_organic, part.is_nonstoichiometric,
                    _dump(part.substitutions), part.mp_id, h,
                ))
            for op in rc.operations:
                rows["recipe_operation"].append((
                    recipe_id, op.position, op.type, op.token, _dump(op.conditions_raw), op.temperature_min_k,
                    op.temperature_max_k, op.time_min_h, op.time_max_h, op.atmosphere, op.atmosphere_raw,
                    op.device, op.media, h,
                ))

    def _close(self, conn: sa.Connection, material_ids: list[int]) -> None:
        """End the validity of the current revision and facts of these materials in this dataset."""
        for chunk in _chunks(material_ids, 5000):
            ids = ", ".join(str(int(i)) for i in chunk)
            params = {"run": self.run_id, "d": self.dataset}
            recipes = f"SELECT id FROM recipe WHERE material_id IN ({ids}) AND dataset = :d AND valid_to_run_id IS NULL"
            for table in ("recipe_participant", "recipe_operation"):
                conn.execute(
                    sa.text(f"UPDATE {table} SET valid_to_run_id = :run WHERE recipe_id IN ({recipes}) "
                            "AND valid_to_run_id IS NULL"),
                    params,
                )
            for table in ("recipe", "superconductor", "relaxation_step", "property_value", "structure",
                          "material_revision"):
                conn.execute(
                    sa.text(f"UPDATE {table} SET valid_to_run_id = :run WHERE material_id IN ({ids}) "
                            "AND dataset = :d AND valid_to_run_id IS NULL"),
                    params,
                )

    def _withdraw_absent(self, conn: sa.Connection) -> None:
        absent = [
            (record_id, mid) for record_id, mid in self.materials.items()
            if record_id not in self.seen and (cur := self.current.get(mid)) is not None
            and cur.status == RevisionStatus.ACTIVE
        ]
        if not absent:
            return
        self._close(conn, [mid for _, mid in absent])
        rev_ids = db.allocate_ids(conn, "material_revision", len(absent))
        rows = []
        for rev_id, (_, mid) in zip(rev_ids, absent):
            cur = self.current[mid]
            rows.append({
                "id": rev_id, "material_id": mid, "composition_id": cur.composition_id,
                "formula_raw": cur.formula_raw, "status": str(RevisionStatus.WITHDRAWN), "extra": None,
                **self._version(cur.content_hash),
            })
            self.current[mid] = _Current(rev_id, cur.content_hash, str(RevisionStatus.WITHDRAWN), self.run_id,
                                         cur.composition_id, cur.formula_raw)
        db.bulk_insert(conn, "material_revision", _arrow(rows, REVISION_COLUMNS))
        self.counts["withdrawn"] = len(absent)
        self._save_counts(conn)

    def _save_counts(self, conn: sa.Connection) -> None:
        c = self.counts
        conn.execute(
            sa.text(
                "UPDATE ingest_run SET n_read = :r, n_inserted = :i, n_updated = :u, n_unchanged = :un, "
                "n_rejected = :rj, n_withdrawn = :w WHERE id = :id"
            ),
            {"r": c["read"], "i": c["inserted"], "u": c["updated"], "un": c["unchanged"], "rj": c["rejected"],
             "w": c["withdrawn"], "id": self.run_id},
        )


# ---- helpers ----------------------------------------------------------------------------------------------------

REJECT_COLUMNS = {
    "run_id": pa.int64(), "file": pa.string(), "position": pa.int64(), "record_key": pa.string(),
    "reason_code": pa.string(), "message": pa.string(), "raw_excerpt": pa.string(),
}
_VERSION_COLUMNS = {
    "dataset": pa.string(), "content_hash": pa.string(), "valid_from_run_id": pa.int64(),
    "valid_to_run_id": pa.int64(),
}
REVISION_COLUMNS = {
    "id": pa.int64(), "material_id": pa.int64(), "composition_id": pa.int64(), "formula_raw": pa.string(),
    "status": pa.string(), "extra": pa.string(), **_VERSION_COLUMNS,
}
CHILD_TABLES: dict[str, dict[str, pa.DataType]] = {
    "structure": {
        "id": pa.int64(), "material_id": pa.int64(), "composition_id": pa.int64(), "kind": pa.string(),
        "calculation_id": pa.string(), "lattice": pa.string(), "species": pa.string(), "frac_coords": pa.string(),
        "site_properties": pa.string(), "n_sites": pa.int64(), "volume_a3": pa.float64(),
        "density_g_cm3": pa.float64(), "is_ordered": pa.bool_(), "spacegroup_number": pa.int64(),
        "extra": pa.string(), **_VERSION_COLUMNS,
    },
    "property_value": {
        "material_id": pa.int64(), "structure_id": pa.int64(), "property": pa.string(), "value": pa.float64(),
        "unit": pa.string(), "method": pa.string(), "correction_scheme": pa.string(),
        "correction_scheme_version": pa.string(), "reference": pa.string(), "extra": pa.string(), **_VERSION_COLUMNS,
    },
    "relaxation_step": {
        "material_id": pa.int64(), "calculation_id": pa.string(), "step_index": pa.int64(), "energy_ev": pa.float64(),
        "energy_per_atom_ev": pa.float64(), "forces_ev_per_a": pa.string(), "stress_kbar": pa.string(),
        "lattice": pa.string(), "species": pa.string(), "frac_coords": pa.string(), **_VERSION_COLUMNS,
    },
    "superconductor": {
        "material_id": pa.int64(), "tc_kelvin": pa.float64(), "is_superconducting": pa.bool_(),
        "lattice_a_angstrom": pa.float64(), "lattice_b_angstrom": pa.float64(), "lattice_c_angstrom": pa.float64(),
        "spacegroup": pa.string(), "cuprate_family": pa.string(), "n_cuo2_planes": pa.int64(),
        "synth_doped": pa.bool_(), "icsd_id": pa.string(), "extra": pa.string(), **_VERSION_COLUMNS,
    },
    "recipe": {
        "id": pa.int64(), "material_id": pa.int64(), "doi": pa.string(), "synthesis_type": pa.string(),
        "target_formula": pa.string(), "target_composition_id": pa.int64(), "reaction_string": pa.string(),
        "paragraph_excerpt": pa.string(), "n_precursors": pa.int64(), "n_operations": pa.int64(),
        "has_operations": pa.bool_(), "has_conditions": pa.bool_(), "has_nonstoichiometric": pa.bool_(),
        "has_organic": pa.bool_(), "has_pure_element_product": pa.bool_(), "max_temperature_k": pa.float64(),
        "extra": pa.string(), **_VERSION_COLUMNS,
    },
    "recipe_participant": {
        "recipe_id": pa.int64(), "role": pa.string(), "position": pa.int64(), "formula_raw": pa.string(),
        "composition_id": pa.int64(), "amount_raw": pa.string(), "amount": pa.float64(), "is_symbolic": pa.bool_(),
        "is_organic": pa.bool_(), "is_nonstoichiometric": pa.bool_(), "substitutions": pa.string(),
        "mp_id": pa.string(), **_VERSION_COLUMNS,
    },
    "recipe_operation": {
        "recipe_id": pa.int64(), "position": pa.int64(), "type": pa.string(), "token": pa.string(),
        "conditions_raw": pa.string(), "temperature_min_k": pa.float64(), "temperature_max_k": pa.float64(),
        "time_min_h": pa.float64(), "time_max_h": pa.float64(), "atmosphere": pa.string(),
        "atmosphere_raw": pa.string(), "device": pa.string(), "media": pa.string(), **_VERSION_COLUMNS,
    },
}


_CONSTANT_COLUMNS = ("dataset", "valid_from_run_id", "valid_to_run_id")


def _arrow(rows: list[dict[str, Any]], columns: dict[str, pa.DataType]) -> pa.Table:
    return pa.table({name: pa.array([r.get(name) for r in rows], type_) for name, type_ in columns.items()})


def _rows_table(rows: list[tuple], columns: dict[str, pa.DataType], dataset: str, run_id: int) -> pa.Table:
    """Arrow table of the rows one run writes: each tuple holds the columns in order, less the constant ones."""
    names = [name for name in columns if name not in _CONSTANT_COLUMNS]
    values = list(zip(*rows)) if rows else [()] * len(names)
    arrays = {name: pa.array(column, columns[name]) for name, column in zip(names, values, strict=True)}
    n = len(rows)
    arrays["dataset"] = pa.repeat(pa.scalar(dataset, pa.string()), n)
    arrays["valid_from_run_id"] = pa.repeat(pa.scalar(run_id, pa.int64()), n)
    arrays["valid_to_run_id"] = pa.nulls(n, pa.int64())
    return pa.table(arrays)


def _property_rows(material_id: int, record: MaterialRecord, h: str, out: list[tuple], st_ids) -> None:
    for prop in record.properties:
        out.append((
            material_id, None if prop.structure_index is None else st_ids[prop.structure_index], prop.property,
            prop.value, prop.unit, prop.method, prop.correction_scheme, prop.correction_scheme_version,
            prop.reference, _dump(prop.extra), h,
        ))


_DUMP_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _dump(value: Any) -> str | None:
    """JSON text for a JSON column (NaN and infinities become null, which both databases accept)."""
    return None if value is None else orjson.dumps(value, default=_json_default, option=_DUMP_OPTIONS).decode()


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _content_hash(record: MaterialRecord) -> str:
    """sha1 of the whole normalised record: dataclass fields in declaration order, dict keys sorted."""
    payload = orjson.dumps(record, default=_json_default,
                           option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    return hashlib.sha1(payload).hexdigest()


@lru_cache(maxsize=64)
def _code_fingerprint(module_file: str) -> str:
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    source = Path(module_file)
    if source.name == "__init__.py":  # a package (mp, synthesis): its parsing and mapping live in its modules
        for path in sorted(source.parent.rglob("*.py")):
            digest.update(path.relative_to(source.parent).as_posix().encode() + b"\0" + path.read_bytes())
        source = None
    for path in (source, here / "framework.py", here / "records.py", here / "formulas.py", here / "structures.py"):
        if path is not None and path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _secondary_formulas(record: MaterialRecord) -> Iterator[str]:
    for st in record.structures:
        yield st.formula
    for rc in record.recipes:
        if rc.target_formula:
            yield rc.target_formula
        for part in rc.participants:
            if part.formula:
                yield part.formula


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _now():
    from matlake.schema.columns import utcnow

    return utcnow()


def _alive(host: str | None, pid: int | None) -> bool:
    if pid is None or host != socket.gethostname():
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _interruptible() -> Iterator[threading.Event]:
    """Turn SIGTERM into RunInterrupted (and Ctrl-C into KeyboardInterrupt, as usual, unless the caller ignores it)
    so the batch in flight rolls back and the run is marked interrupted.

    Yields an event set once either signal has arrived, for the case where a C extension replaces our exception
    with its own (DuckDB cancels the running statement and raises RuntimeError)."""
    terminated = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield terminated
        return

    def on_sigterm(signum, frame):
        terminated.set()
        raise RunInterrupted("terminated")

    def on_sigint(signum, frame):
        terminated.set()
        raise KeyboardInterrupt

    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, on_sigterm)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # a caller that ignores Ctrl-C keeps doing so
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield terminated
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _RecordTimeout(Exception):
    pass


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Reject a record whose normalisation runs longer than ``seconds`` (main thread only; uses SIGALRM)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _RecordTimeout()

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _RecordTimeout:
        raise RecordRejected("timeout", f"normalising the record took longer than {seconds:g} s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _progress(enabled: bool, label: str) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as bar:
        task = bar.add_task(label, total=None)
        count = 0

        def tick() -> None:
            nonlocal count
            count += 1
            if count % 1000 == 0:
                bar.update(task, completed=count)

        yield tick


@contextmanager
def _young_collections_only() -> Iterator[None]:
    """Pause CPython's automatic garbage collection during an ingest; each batch collects the young generation.

    A run holds millions of long-lived objects (the batch in flight, the ids and revisions of the dataset, cached
    compositions) and automatic full collections re-scan all of them again and again: 40% of the CPU time of a
    tabular ingest. Reference cycles that normalising leaves behind are still freed, by :func:`_collect_young` after
    each batch. The previous setting comes back at the end.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _collect_young() -> None:
    gc.collect(0)
