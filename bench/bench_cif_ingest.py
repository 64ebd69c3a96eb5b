"""CIFs per second for the 10,904 3DSC/MP structures: one process, and parsing on 1 vs 2 Dask workers.

    python bench/bench_cif_ingest.py [--limit N] [--chunk-size 100] [--repeats 1] [--skip-ingest]

What is timed:
- read: decompressing the archive and decoding every member (the reading process, always single).
- parse, one process: ``cif.parse_text`` (pymatgen ``CifParser`` + our metadata + ``structure_data``) on every CIF.
- ingest, one process: ``framework.ingest`` of the archive into a fresh DuckDB file (reading, parsing, Tc join,
  normalising, loading), as ``matlake ingest supercon`` runs it.
- parse on Dask: ``parallel.map_chunks`` of ``parse_text`` over the pre-read texts, in chunks, on a
  ``LocalCluster(n_workers=k, threads_per_worker=1)``, for k = 1 and 2 (workers warmed up first; runs interleaved
  so that load from other processes hits both alike). Speed-up = best time(1 worker) / best time(2 workers), the
  best of ``--repeats`` runs being the one least disturbed by other processes (medians are printed too), with the
  CPU seconds the workers and this process spent. Wall-clock speed-up needs two idle cores; the CPU-time figure
  (work of one worker / work of the busiest of two) is what two dedicated cores would give, minus this process's
  share (deserialising results, the scheduler).
- ingest with Dask: the same framework ingest with ``cif.use_dask(client)``: workers parse, this process writes.

The load average is printed with each figure: on a shared 2-core machine other processes eat into the speed-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ARCHIVE = SHARED_DATA / "supercon" / "3dsc_mp_cifs.tar.xz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--limit", type=int, default=None, help="parse only the first N CIFs (ingest: all)")
    parser.add_argument("--chunk-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1, help="interleaved 1-/2-worker timings; medians reported")
    parser.add_argument("--skip-ingest", action="store_true", help="time parsing only")
    args = parser.parse_args()
    if not args.archive.is_file():
        raise SystemExit(f"needs {args.archive} (shared data directory absent)")
    warnings.simplefilter("ignore")

    from matlake.ingest import cif

    print(f"{os.cpu_count()} CPUs; load average {_load()}")
    t0 = time.perf_counter()
    items = list(cif.iter_cif_texts(args.archive))
    read_s = time.perf_counter() - t0
    print(f"read:                 {len(items):6d} CIFs in {read_s:7.2f} s  ({len(items) / read_s:8.0f} CIFs/s)")
    items = items[: args.limit] if args.limit else items
    n = len(items)

    parse = partial(cif.parse_text, kind="relaxed")
    t0 = time.perf_counter()
    serial = [parse(item) for item in items]
    serial_s = time.perf_counter() - t0
    n_problems = sum(isinstance(p, cif.CifProblem) for blocks in serial for p in blocks)
    print(f"parse, one process:   {n:6d} CIFs in {serial_s:7.2f} s  ({n / serial_s:8.1f} CIFs/s; "
          f"{n_problems} problems)  load {_load()}")

    if not args.skip_ingest:
        summary, ingest_s = _ingest(args.archive, client=None)
        print(f"ingest, one process:  {summary.n_read:6d} CIFs in {ingest_s:7.2f} s  "
              f"({summary.n_read / ingest_s:8.1f} CIFs/s; {summary.n_inserted} inserted, "
              f"rejects {summary.rejects_by_reason})  load {_load()}")

    timings, cpu = _dask_parse_timings(items, parse, args.chunk_size, args.repeats, serial)
    best = {k: min(v) for k, v in timings.items()}
    median = {k: statistics.median(v) for k, v in timings.items()}
    for k in (1, 2):
        print(f"parse, Dask {k} worker{'s' if k > 1 else ' '}: {n:6d} CIFs in {best[k]:7.2f} s  "
              f"({n / best[k]:8.1f} CIFs/s; runs {', '.join(f'{x:.1f}' for x in timings[k])} s)")
    print(f"speed-up, 2 workers over 1: {best[1] / best[2]:.2f}x best-of-{args.repeats}, "
          f"{median[1] / median[2]:.2f}x median  (best 2 workers over one process without Dask: "
          f"{serial_s / best[2]:.2f}x)")
    one_cpu = statistics.median(sum(c) for c in cpu[1])
    two_cpu = statistics.median(max(c) for c in cpu[2])
    print(f"speed-up from worker CPU time (each worker on a core of its own): {one_cpu / two_cpu:.2f}x  "
          f"(1 worker {one_cpu:.1f} CPU s; busiest of 2 workers {two_cpu:.1f} CPU s)")

    if not args.skip_ingest:
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            _warm(client, items, parse)
            summary, dask_ingest_s = _ingest(args.archive, client=client, chunk_size=args.chunk_size)
        print(f"ingest, Dask 2 workers: {summary.n_read:6d} CIFs in {dask_ingest_s:7.2f} s  "
              f"({summary.n_read / dask_ingest_s:8.1f} CIFs/s; {summary.n_inserted} inserted)  load {_load()}")


def _dask_parse_timings(items, parse, chunk_size, repeats, expected) -> dict[int, list[float]]:
    from distributed import Client, LocalCluster

    from matlake.ingest.parallel import map_chunks

    timings: dict[int, list[float]] = {1: [], 2: []}
    cpu: dict[int, list[list[float]]] = {1: [], 2: []}
    for _ in range(repeats):
        for k in (1, 2):
            with LocalCluster(n_workers=k, threads_per_worker=1, dashboard_address=None) as cluster, \
                    Client(cluster) as client:
                _warm(client, items, parse)
                cpu_before = client.run(time.process_time)
                main_cpu = time.process_time()
                t0 = time.perf_counter()
                results = list(map_chunks(client, parse, items, chunk_size=chunk_size))
                timings[k].append(time.perf_counter() - t0)
                main_cpu = time.process_time() - main_cpu
                worker_cpu = [after - cpu_before[w] for w, after in client.run(time.process_time).items()]
                cpu[k].append(worker_cpu)
            if [[_summary(p) for p in blocks] for blocks in results] != [
                    [_summary(p) for p in blocks] for blocks in expected]:
                raise SystemExit(f"Dask results with {k} worker(s) differ from the single-process ones")
            print(f"  Dask {k} worker(s): {timings[k][-1]:.2f} s wall; CPU s: workers "
                  f"{', '.join(f'{c:.1f}' for c in worker_cpu)}, this process {main_cpu:.1f}  load {_load()}")
    return timings, cpu


def _summary(parsed):
    structure = getattr(parsed, "structure", None)
    return (parsed.name, getattr(parsed, "reason_code", None), structure and structure.species,
            structure and structure.frac_coords)


def _warm(client, items, parse) -> None:
    """Import pymatgen and parse a few CIFs on every worker, so start-up costs stay out of the timings."""
    client.run(lambda: [parse(item) for item in items[:5]])


def _ingest(archive: Path, client, chunk_size: int = 100):
    from matlake import db
    from matlake.ingest import cif, supercon
    from matlake.ingest.framework import ingest

    with tempfile.TemporaryDirectory() as tmp:
        engine = db.create_engine(f"duckdb:///{tmp}/bench.duckdb")
        db.upgrade(engine)
        t0 = time.perf_counter()
        if client is None:
            [summary] = ingest(supercon, [archive], engine=engine)
        else:
            with cif.use_dask(client, chunk_size=chunk_size):
                [summary] = ingest(supercon, [archive], engine=engine)
        elapsed = time.perf_counter() - t0
        engine.dispose()
    return summary, elapsed


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
