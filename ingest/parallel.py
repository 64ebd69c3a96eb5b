"""Chunked parallel parsing on Dask: workers parse, the calling process keeps writing alone.

DuckDB allows one writer and Dask costs about 3 ms per task, so parsing fans out in chunks of raw items (CIF texts,
rows) and the results come back, in input order, to the single process that loads them. The per-item function must be
picklable (a module-level function or a ``functools.partial`` of one) and should return failures as values: an
exception inside a task fails the whole chunk, and then the caller's run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_CHUNK_SIZE = 200


def _apply_chunk(func: Callable[[T], R], chunk: list[T]) -> list[R]:
    return [func(item) for item in chunk]


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter), reading ``items`` lazily."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def map_chunks(
    client: Any,
    func: Callable[[T], R],
    items: Iterable[T],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_in_flight: int | None = None,
) -> Iterator[R]:
    """``func`` over ``items`` on the workers of a ``distributed.Client``, ``chunk_size`` items per task, in order.

    At most ``max_in_flight`` chunks (default: two per worker thread, plus one) are submitted ahead of the one being
    consumed, so memory stays bounded however long ``items`` is and the workers never wait for the reader.
    """
    if max_in_flight is None:
        max_in_flight = 2 * max(1, sum(client.nthreads().values())) + 1
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
    pending: deque = deque()
    chunks = chunked(items, chunk_size)
    try:
        for chunk in chunks:
            pending.append(client.submit(_apply_chunk, func, chunk, pure=False))
            if len(pending) >= max_in_flight:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    finally:
        for future in pending:  # the consumer stopped early: do not leave work queued on the cluster
            future.cancel()
