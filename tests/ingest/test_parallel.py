"""Chunked parallel mapping on Dask: order, chunking, bounded submission, early stop."""

from __future__ import annotations

import pytest

from matlake.ingest.parallel import chunked, map_chunks

distributed = pytest.importorskip("distributed")


def _square(x: int) -> int:
    return x * x


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise RuntimeError("three")
    return x


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(processes=False, n_workers=2, threads_per_worker=1,
                                  dashboard_address="127.0.0.1:0") as cluster, distributed.Client(cluster) as client:
        yield client


def test_chunked():
    assert list(chunked(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunked([], 3)) == []
    with pytest.raises(ValueError):
        list(chunked(range(3), 0))


@pytest.mark.parametrize(("n", "chunk_size", "max_in_flight"), [(0, 5, None), (1, 5, None), (103, 7, 2), (50, 1, 1)])
def test_results_come_back_in_input_order(client, n, chunk_size, max_in_flight):
    results = list(map_chunks(client, _square, iter(range(n)), chunk_size=chunk_size, max_in_flight=max_in_flight))
    assert results == [x * x for x in range(n)]


def test_items_are_read_lazily(client):
    consumed = []

    def items():
        for x in range(1000):
            consumed.append(x)
            yield x

    stream = map_chunks(client, _square, items(), chunk_size=10, max_in_flight=2)
    assert next(stream) == 0
    assert len(consumed) <= 30  # two chunks submitted ahead, plus the one being filled
    stream.close()


def test_a_failing_task_raises_in_the_caller(client):
    with pytest.raises(RuntimeError, match="three"):
        list(map_chunks(client, _fail_on_three, range(10), chunk_size=2))
