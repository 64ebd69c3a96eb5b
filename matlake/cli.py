"""The ``matlake`` command line: one sub-command group per package, user errors as one line and a non-zero exit."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.table import Table

from . import db
from .config import get_settings
from .errors import DatabaseError, InputError, MatlakeError

app = typer.Typer(
    help="matlake: a materials-data lakehouse (ingest -> tables -> features -> models -> predictions).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema: migrations and version.", no_args_is_help=True)
app.add_typer(db_app, name="db")
features_app = typer.Typer(help="Parquet feature sets: build and list.", no_args_is_help=True)
app.add_typer(features_app, name="features")
models_app = typer.Typer(help="The model registry: list and show.", no_args_is_help=True)
app.add_typer(models_app, name="models")
scheduler_app = typer.Typer(help="Scheduled ingestion: run the service, list the jobs.", no_args_is_help=True)
app.add_typer(scheduler_app, name="scheduler")

out = Console()
err = Console(stderr=True)


# ---- database ---------------------------------------------------------------------------------------------------


@app.command()
def init() -> None:
    """Create the database (embedded DuckDB by default) and migrate it to the current schema."""
    url = get_settings().resolved_database_url
    rev = db.upgrade(db.create_engine(url))
    out.print(f"database ready at {_display_url(url)} (schema {rev})")


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Migrate the database schema to REVISION (default: head)."""
    url = get_settings().resolved_database_url
    rev = db.upgrade(db.create_engine(url), revision)
    out.print(f"schema at {rev} ({_display_url(url)})")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target revision, e.g. base.")]) -> None:
    """Migrate the database schema down to REVISION."""
    rev = db.downgrade(db.create_engine(), revision)
    out.print(f"schema at {rev or 'base (empty)'}")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and of this code."""
    engine = db.create_engine(read_only=True)
    with db.connect(engine) as conn:
        rev = db.current_revision(conn)
    head = db.head_revision()
    state = "up to date" if rev == head else ("empty" if rev is None else "differs from code")
    out.print(f"database: {rev or '-'}  code: {head}  ({state})")


# ---- SQL and history --------------------------------------------------------------------------------------------


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL to run (read-only).")],
    format: Annotated[str, typer.Option("--format", "-f", help="table, csv, json or parquet.")] = "table",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to FILE instead of stdout.")] = None,
    limit: Annotated[int, typer.Option(help="Rows shown in table format.")] = 50,
) -> None:
    """Run a read-only SQL query over the tables and views; print a table or write CSV, JSON or Parquet."""
    from .query import run_query, write_result

    if format not in {"table", "csv", "json", "parquet"}:
        raise InputError(f"unknown format {format!r}: use table, csv, json or parquet")
    if format == "parquet" and output is None:
        raise InputError("--format parquet needs --output FILE")
    result = run_query(query)
    if format == "table":
        _print_table(result, limit=limit)
        return
    write_result(result, format, output)
    if output is not None:
        err.print(f"wrote {result.num_rows} rows to {output}")


@app.command()
def runs(
    source: Annotated[Optional[str], typer.Option(help="Only this source.")] = None,
    limit: Annotated[int, typer.Option(help="Most recent N runs.")] = 20,
) -> None:
    """Ingestion history: every run with its release, status and counts."""
    from .query import run_query

    where = "WHERE source = :source" if source else ""
    result = run_query(
        f"SELECT run_id, source, dataset, status, n_read AS read, n_inserted AS inserted, n_updated AS updated, "
        f"n_unchanged AS unchanged, n_rejected AS rejected, n_withdrawn AS withdrawn, "
        f"CAST(date_trunc('second', started_at) AS VARCHAR) AS started FROM ingest_history {where} "
        f"ORDER BY run_id DESC LIMIT :limit",
        {"source": source, "limit": limit} if source else {"limit": limit},
    )
    _print_table(result, limit=limit)


# ---- ingestion and demo -----------------------------------------------------------------------------------------


@app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="Source name, e.g. demo.")],
    paths: Annotated[Optional[list[Path]], typer.Argument(
        help="Input files, or folders for sources that read them (OQMD OPTIMADE pages, TAATA POSCARs).")] = None,
    release: Annotated[Optional[str], typer.Option(help="Release tag; default derived from checksums.")] = None,
    mode: Annotated[str, typer.Option(help="full (withdraw absent records) or partial.")] = "full",
    download: Annotated[bool, typer.Option(
        "--download", help="Fetch the registered files of the release (--release, default: the source's default) "
                           "into the download cache, verify their checksums, then ingest them.")] = False,
) -> None:
    """Ingest SOURCE from local files into the database (one run per dataset, rejects recorded)."""
    from matlake.ingest import sources
    from matlake.ingest.framework import ingest as run_ingest

    module = sources.get(source)
    files = list(paths or [])
    if download:
        from matlake.ingest import download as downloads

        if files:
            raise InputError("give input files or --download, not both")
        remote = downloads.get_release(source, release)
        files, release = downloads.fetch_release(remote), remote.tag
    if not files and hasattr(module, "default_files"):
        files = module.default_files()
    if mode not in {"full", "partial"}:
        raise InputError(f"unknown mode {mode!r}: use full or partial")
    engine = db.create_engine()
    db.upgrade(engine)
    summaries = run_ingest(module, files, engine=engine, release=release, mode=mode, progress=True)
    _print_summaries(summaries)


@app.command()
def demo() -> None:
    """Build a demo database from data shipped inside pymatgen and show it with a few SQL queries."""
    from matlake import demo as demo_module

    started = time.perf_counter()
    demo_module.run(out)
    out.print(f"[bold]demo finished in {time.perf_counter() - started:.1f} s[/bold]")


# ---- features -----------------------------------------------------------------------------------------------


def _feature_store():
    from matlake.featurestore.store import FeatureStore

    return FeatureStore(get_settings().resolved_feature_store, db.create_engine())


@features_app.command("build")
def features_build(
    name: Annotated[str, typer.Argument(help="Feature set: magpie, protostructure, ...")],
    source: Annotated[Optional[str], typer.Option(help="Only this source's materials (its own partition).")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="Address of an existing Dask scheduler.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Workers of the local Dask cluster.")] = None,
    full: Annotated[bool, typer.Option("--full", help="Recompute every row instead of only changed inputs.")] = False,
) -> None:
    """Build a new version of a feature set from the current tables (only rows whose inputs changed)."""
    from matlake.featurestore.builders import build_feature_set

    started = time.perf_counter()
    store = _feature_store()
    info = build_feature_set(name, engine=store.engine, store=store, source=source, scheduler=scheduler,
                             n_workers=workers, incremental=not full)
    out.print(
        f"{info.name} v{info.version} ({info.partition}): {info.row_count} rows, "
        f"{info.parameters.get('computed_rows')} computed, snapshot run {info.snapshot_run_id}, "
        f"{len(info.files)} files, {time.perf_counter() - started:.1f} s"
    )


@features_app.command("list")
def features_list() -> None:
    """Every registered feature-set version with its snapshot and size."""
    from .query import run_query

    _print_table(run_query(
        "SELECT name, version, partition, row_count, snapshot_run_id, code_version, "
        "CAST(date_trunc('second', created_at) AS VARCHAR) AS created FROM feature_set ORDER BY name, partition, version"
    ), limit=200)


# ---- models -------------------------------------------------------------------------------------------------


@app.command()
def train(
    architecture: Annotated[str, typer.Argument(help="rf (random forest on Magpie), roost or wren.")],
    source: Annotated[str, typer.Option(help="Source whose labels to train on.")],
    property: Annotated[str, typer.Option("--property", help="Property name, e.g. band_gap.")],
    split: Annotated[str, typer.Option(help="Split name; created with --strategy if it does not exist.")],
    name: Annotated[Optional[str], typer.Option(help="Model name (default: ARCH-SOURCE-PROPERTY).")] = None,
    strategy: Annotated[str, typer.Option(help="random, composition, chemical_system, protostructure, kfold.")] = "random",
    seed: Annotated[int, typer.Option(help="Seed of the split and the model.")] = 0,
    dataset: Annotated[Optional[str], typer.Option(help="Only labels of this dataset of the source.")] = None,
    as_of: Annotated[Optional[int], typer.Option(help="Read labels as of this ingest run.")] = None,
    members: Annotated[int, typer.Option(help="Ensemble members (roost, wren).")] = 1,
    epochs: Annotated[int, typer.Option(help="Training epochs (roost, wren).")] = 100,
    scheduler: Annotated[Optional[str], typer.Option(help="Dask scheduler address for ensemble members.")] = None,
    max_wyckoff: Annotated[Optional[int], typer.Option(help="Wren: exclude (and count) labels with this many Wyckoff positions or more (thesis: 16).")] = None,
    hparams: Annotated[Optional[str], typer.Option(help='Architecture hyper-parameters as JSON (roost, wren), e.g. \'{"sym_dropout": 0.5}\'; default: the thesis\'.')] = None,
) -> None:
    """Train and register a model on labels from SQL and inputs from the feature store."""
    from matlake.modelling import workflows

    summary = workflows.train(
        architecture, source=source, property=property, split_name=split, name=name, strategy=strategy, seed=seed,
        dataset=dataset, as_of=as_of, members=members, epochs=epochs, scheduler=scheduler, max_wyckoff=max_wyckoff,
        hparams=hparams,
    )
    out.print(summary)


@app.command()
def predict(
    model: Annotated[str, typer.Argument(help="Model id, name (newest version) or name:vN.")],
    on: Annotated[Optional[str], typer.Option("--on", help="source:NAME, split:NAME:PART or sql:SELECT composition_id ...")] = None,
    labels: Annotated[Optional[str], typer.Option(help="Hypothetical protostructure labels: comma-separated, or a file with one per line.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    force: Annotated[bool, typer.Option(help="Write a new run even if this one exists.")] = False,
) -> None:
    """Predict with a registered model and write a tracked prediction run (see the predictions_latest view)."""
    from matlake.modelling.predict import labels_selection, predict as run_predict

    if (on is None) == (labels is None):
        raise InputError("give exactly one of --on (stored materials) or --labels (protostructure labels)")
    s = run_predict(db.create_engine(), model, on or labels_selection(labels), device=device, force=force)
    state = "already stored (use --force to write again)" if s.reused else f"{s.seconds:.2f} s on {s.device}"
    left_out = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in (s.n_excluded or {}).items() if n)
    out.print(f"prediction run {s.run_id}: {s.model}, {s.n_predictions} predictions, {state}"
              + (f"; excluded {left_out}" if left_out else ""))


@models_app.command("list")
def models_list() -> None:
    """Registered models with their target, split and snapshot."""
    from .query import run_query

    _print_table(run_query(
        "SELECT m.id, m.name, m.version, m.architecture, m.target_source, m.target_property, m.n_members, "
        "s.name AS split, m.snapshot_run_id, round(m.train_seconds, 1) AS train_s FROM model m "
        "LEFT JOIN dataset_split s ON s.id = m.split_id ORDER BY m.name, m.version"
    ), limit=500)


@models_app.command("show")
def models_show(model: Annotated[str, typer.Argument(help="Model id, name or name:vN.")]) -> None:
    """One model: registry entry and metrics per split part."""
    from matlake.modelling.registry import get_model, model_metrics

    engine = db.create_engine(read_only=True)
    m = get_model(engine, model)
    out.print(f"[bold]{m.label}[/bold] ({m.architecture}), id {m.id}: {m.target_source}/{m.target_property}, "
              f"split {m.split_id}, snapshot run {m.snapshot_run_id}, {m.n_members} member(s)")
    out.print(f"weights {m.weights_path} (sha256 {m.weights_sha256})")
    out.print(f"hyper-parameters {m.hyperparameters}")
    table = Table(title="metrics")
    for col in ("part", "metric", "member", "value"):
        table.add_column(col)
    for row in model_metrics(engine, m.id):
        table.add_row(row["part"], row["metric"], "" if row["member"] is None else str(row["member"]),
                      f"{row['value']:.5g}")
    out.print(table)


@app.command()
def report(
    model: Annotated[str, typer.Argument(help="Model id, name (newest version) or name:vN.")],
    on: Annotated[Optional[str], typer.Option(
        "--on", help="What to evaluate: split:NAME:PART, source:NAME or sql:SELECT ... (default: the test part).")] = None,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="HTML file to write (default: report-NAME-vN.html).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    store_predictions: Annotated[bool, typer.Option(
        "--store-predictions", help="Also write the predictions as a tracked prediction run.")] = False,
) -> None:
    """Write one self-contained HTML report of a model: registry entry, data, metrics and evaluation figures."""
    from .report import write_report

    engine = db.create_engine() if store_predictions else db.create_engine(read_only=True)
    s = write_report(engine, model, output, on=on, device=device, store_predictions=store_predictions)
    skipped = f", {s.n_unlabelled} without a label left out" if s.n_unlabelled else ""
    out.print(f"wrote {s.path}: {s.model} on {s.selection}, {s.n_evaluated} predictions{skipped}, "
              f"MAE {s.metrics['mae']:.4g}")


# ---- scheduled ingestion ----------------------------------------------------------------------------------------

JobsOption = Annotated[Path, typer.Option("--jobs", envvar="MATLAKE_JOBS",
                                          help="Jobs file (TOML); default ./matlake-jobs.toml.")]


@scheduler_app.command("run")
def scheduler_run(jobs: JobsOption = Path("matlake-jobs.toml")) -> None:
    """Run the jobs on their schedules until SIGTERM or Ctrl-C (one job at a time per database)."""
    from .scheduler import Scheduler, load_jobs

    def say(message: str) -> None:
        out.print(message, markup=False, highlight=False, soft_wrap=True)

    say(Scheduler(load_jobs(jobs), say=say).run())


@scheduler_app.command("list")
def scheduler_list(
    jobs: JobsOption = Path("matlake-jobs.toml"),
    count: Annotated[int, typer.Option("--count", "-n", help="Fire times shown per job.")] = 3,
) -> None:
    """Every job with its schedule, inputs, next fire times and last outcome."""
    from . import snapshots
    from .scheduler import EventLog, load_jobs, next_fire_times

    spec = load_jobs(jobs)
    now = spec.now()
    last = EventLog(spec.log).last_outcomes()
    path = db.duckdb_path(get_settings().resolved_database_url)
    snap = snapshots.current(path) if path is not None else None
    table = Table(title=f"jobs in {spec.path} (times: {spec.timezone or 'local time'})",
                  caption=f"log {spec.log}; " + (f"notebooks read {snap.describe()}" if snap else "no snapshot yet"))
    for col in ("job", "source", "schedule", "input", "retries", "timeout_s", "next fire times", "last outcome"):
        table.add_column(col, overflow="fold")
    for job in spec.jobs:
        fires = "\n".join(t.isoformat(sep=" ", timespec="seconds") for t in next_fire_times(job, now, count))
        outcome = last.get(job.name, {"event": None, "skipped_since": 0})
        shown = f"{outcome['event']} {outcome['time'][:19].replace('T', ' ')} UTC" if outcome["event"] else "-"
        if outcome["skipped_since"]:
            shown += f", then {outcome['skipped_since']} trigger(s) skipped"
        inputs = "download" if job.download else (", ".join(job.input) or "default files")
        table.add_row(job.name, job.source, job.schedule, inputs, str(job.retries), f"{job.timeout_s:g}", fires,
                      shown)
    out.print(table)


@app.command()
def cuprates(
    source: Annotated[Optional[str], typer.Option(help="Structures of this source (default supercon; 'all').")] = "supercon",
    force: Annotated[bool, typer.Option(help="Refit every family even when nothing changed.")] = False,
) -> None:
    """Cu-O distances of CuO2-plane Cu sites, per-family lattice calibrations, estimates for lattice-only records."""
    from matlake.featurestore.store import FeatureStore
    from matlake.modelling.cuprates import run_pipeline

    engine = db.create_engine()
    summary = run_pipeline(engine, FeatureStore(get_settings().resolved_feature_store, engine),
                           source=None if source == "all" else source, force=force)
    for line in summary.lines():
        out.print(line)


# ---- output helpers ---------------------------------------------------------------------------------------------


def _print_table(result, *, limit: int, title: str | None = None) -> None:
    table = Table(title=title, show_lines=False)
    for name in result.column_names:
        table.add_column(name, overflow="fold")
    for row in result.slice(0, limit).to_pylist():
        table.add_row(*("" if v is None else _fmt(v) for v in row.values()))
    out.print(table)
    if result.num_rows > limit:
        out.print(f"... {result.num_rows - limit} more rows (use --limit or --format csv)")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _print_summaries(summaries) -> None:
    table = Table(title="ingest runs")
    for col in ("run", "source", "dataset", "status", "read", "inserted", "updated", "unchanged", "rejected",
                "withdrawn", "rows/s"):
        table.add_column(col)
    for s in summaries:
        table.add_row(str(s.run_id), s.source, s.dataset, s.status, str(s.n_read), str(s.n_inserted),
                      str(s.n_updated), str(s.n_unchanged), str(s.n_rejected), str(s.n_withdrawn),
                      f"{s.n_read / max(s.seconds, 1e-9):,.0f}")
    out.print(table)
    for s in summaries:
        if s.rejects_by_reason:
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(s.rejects_by_reason.items()))
            out.print(f"rejects in run {s.run_id}: {reasons} (see the ingest_reject table)")


def _display_url(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def main() -> None:
    """Console entry point: user errors print one line on stderr and exit non-zero, never a traceback."""
    try:
        app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors: unknown command, bad option
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            err.print(f"error: {exc}")
        sys.exit(getattr(exc, "exit_code", 2))
    except MatlakeError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
        sys.exit(exc.exit_code)
    except sa.exc.DBAPIError as exc:
        message = str(exc.orig or exc).strip().splitlines()[0]
        err.print(f"[red]error:[/red] database: {message}", highlight=False)
        sys.exit(1)
    except OSError as exc:
        err.print(f"[red]error:[/red] {exc.strerror or exc}: {exc.filename or ''}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
