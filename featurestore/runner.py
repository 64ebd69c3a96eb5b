"""Chunked feature computation on Dask (a LocalCluster by default, or an existing scheduler) or in-process.

Workers compute one chunk each and write one Parquet part into a staging folder; only the coordinating process
touches the database.  A worker running a chunk imports this module, ``parts`` and the chunk function's module:
keep all three free of SQLAlchemy and the schema.  The same chunks in the same order give the same rows whether
run on Dask or in-process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa

from .parts import PartFile, write_part

ChunkFunction = Callable[[Sequence[Any]], pa.Table]


def _compute_and_write(fn: ChunkFunction, chunk: Sequence[Any], directory: str, index: int) -> PartFile | None:
    table = fn(chunk)
    if table.num_rows == 0:
        return None
    return write_part(Path(directory), table, stem=f"chunk-{index:06d}")


@contextmanager
def dask_client(scheduler: str | None = None, n_workers: int | None = None) -> Iterator[Any]:
    """A client for ``scheduler`` (an address) or for a fresh LocalCluster with one thread per worker."""
    import dask
    from distributed import Client, LocalCluster

    from matlake.config import get_settings  # here: workers unpickling _compute_and_write need not import it

    settings = get_settings()
    scheduler = scheduler or settings.dask_scheduler
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    workers = n_workers or settings.dask_workers
    logging.getLogger("distributed").setLevel(logging.ERROR)  # worker shutdown chatter is not the user's concern
    # No dashboard, so nobody reads the workers' statistical profiles: sampling every task's stack every 10 ms
    # takes the GIL from the task itself (the nannies pass this setting on to their worker processes).
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None, processes=True)
    with cluster, Client(cluster) as client:
        yield client


def run_chunks(
    fn: ChunkFunction,
    items: Sequence[Any],
    staging: Path,
    *,
    chunk_size: int = 2000,
    client: Any = None,
) -> list[PartFile]:
    """Apply ``fn`` to ``items`` in chunks, one Parquet part per non-empty chunk, in chunk order."""
    chunks = [items[i:i + chunk_size] for i in range(0, len(items), chunk_size)]
    if client is None:
        parts = [_compute_and_write(fn, chunk, str(staging), k) for k, chunk in enumerate(chunks)]
    else:
        futures = [client.submit(_compute_and_write, fn, chunk, str(staging), k, pure=False)
                   for k, chunk in enumerate(chunks)]
        parts = client.gather(futures)
    return [p for p in parts if p is not None]
