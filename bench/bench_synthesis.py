"""Recipes per second: the whole text-mined solid-state release through the framework into a fresh DuckDB file.

    python bench/bench_synthesis.py [--file PATH] [--batch-size 5000] [--profile] [--keep DB_PATH]

Prints wall and CPU seconds (on a shared machine CPU time is the steadier figure), recipes/s, peak memory, the
run's counts and rejects by reason. ``--profile`` runs it under cProfile and prints where the time goes, the source module's share
(the ``ingest/synthesis/`` package) apart from the framework's.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import resource
import tempfile
import time
from pathlib import Path

from matlake import db
from matlake.ingest import synthesis
from matlake.ingest.framework import ingest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DATA = SHARED_DATA / "synthesis" / "solid-state_dataset_2019-12-03.json.xz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DATA)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--keep", type=Path, help="write the DuckDB file here and keep it")
    args = parser.parse_args()
    if not args.file.is_file():
        raise SystemExit(f"needs {args.file} (shared data directory absent)")

    with tempfile.TemporaryDirectory() as tmp:
        db_path = args.keep or Path(tmp) / "bench.duckdb"
        engine = db.create_engine(f"duckdb:///{db_path}")
        db.upgrade(engine)
        profiler = cProfile.Profile() if args.profile else None
        wall, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        [summary] = ingest(synthesis, [args.file], engine=engine, release="bench", batch_size=args.batch_size)
        if profiler:
            profiler.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        engine.dispose()

    print(f"file: {args.file.name}  dataset: {summary.dataset}  status: {summary.status}")
    print(f"read {summary.n_read}  accepted {summary.n_accepted}  rejected {summary.n_rejected}  "
          f"(read == accepted + rejected: {summary.n_read == summary.n_accepted + summary.n_rejected})")
    print(f"rejects by reason: {dict(sorted(summary.rejects_by_reason.items(), key=lambda kv: -kv[1]))}")
    print(f"wall {wall:.1f} s  cpu {cpu:.1f} s  ->  {summary.n_read / wall:,.0f} recipes/s wall, "
          f"{summary.n_read / cpu:,.0f} recipes/s cpu")
    print(f"peak memory (max RSS of this process): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if profiler:
        _report(profiler)


def _report(profiler: cProfile.Profile) -> None:
    stats = pstats.Stats(profiler)
    total = stats.total_tt
    own = sum(row[2] for func, row in stats.stats.items() if "/ingest/synthesis/" in func[0])
    print(f"profile: {total:.1f} s in all, {own:.1f} s ({own / total:.0%}) in the ingest/synthesis/ package's own code")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
    print(out.getvalue())


if __name__ == "__main__":
    main()
