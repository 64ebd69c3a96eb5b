"""Roost training and inference throughput on CPU (full-size reference model, 2 threads).

Random 2-6 element compositions over 103 elements with a random 200-d embedding (the values do
not change the cost). A training step is batch slicing, forward, robust L1 loss, backward and an
Adam step; inference is slicing plus an inference-mode forward. Every call is timed on its own
and the rates of the fastest and of the median call are printed.

Large batches are slower per sample on CPU mostly because glibc returns every big temporary (the
(n_edges, 768) hidden layers) to the OS and page-faults it back in on the next call; running with
MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 keeps them in the heap.

Run: python bench/bench_roost_throughput.py [--threads 2] [--batch 128] [--steps 20]
       [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import matlake  # noqa: F401  (first: its OpenMP setting must precede torch's start)
import numpy as np
import torch

from matlake.modelling.batching import CompositionGraphs
from matlake.modelling.losses import robust_l1_loss
from matlake.modelling.models.roost import Roost

N_ELEMENTS = 103


def random_compositions(n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Flat (element ids, amounts, node offsets) of n random 2-6 element compositions."""
    sizes = rng.integers(2, 7, size=n)
    elem = np.concatenate([rng.choice(N_ELEMENTS, size=k, replace=False) for k in sizes])
    amounts = rng.integers(1, 9, size=int(sizes.sum())).astype(float)
    return elem, amounts, np.concatenate([[0], np.cumsum(sizes)])


def time_calls(call: Callable[[int], None], n_calls: int, repeats: int) -> list[float]:
    """Seconds per call of ``call(i)`` for i in range(n_calls), ``repeats`` times over."""
    call(0)  # warm-up: allocator, thread pool, first-call dispatch
    seconds = []
    for _ in range(repeats):
        for i in range(n_calls):
            start = time.perf_counter()
            call(i)
            seconds.append(time.perf_counter() - start)
    return seconds


def report(label: str, seconds: list[float], samples_per_call: int) -> None:
    # the fastest calls are those no other process interrupted: on a shared machine they are the
    # best estimate of the idle-machine rate; the median shows what sharing costs
    best = samples_per_call / min(seconds)
    median = samples_per_call / statistics.median(seconds)
    print(f"{label}: {best:,.0f} samples/s (fastest call), {median:,.0f} (median call)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    n_data = args.batch * args.steps
    flat = random_compositions(n_data, rng)
    start = time.perf_counter()
    graphs = CompositionGraphs.from_flat(*flat)
    build_ms = (time.perf_counter() - start) * 1e3
    targets = torch.randn(n_data, 1)
    model = Roost(torch.randn(N_ELEMENTS, 200))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=1e-6)
    batches = torch.randperm(n_data).split(args.batch)

    def slice_batch(i: int) -> None:
        graphs.slice(batches[i])

    def train_step(i: int) -> None:
        mean, log_sigma = model(graphs.slice(batches[i]))
        loss = robust_l1_loss(mean, log_sigma, targets[batches[i]])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    def infer(batch_size: int) -> tuple[Callable[[int], None], int]:
        chunks = [c for c in torch.arange(n_data).split(batch_size) if len(c) == batch_size]

        def run(i: int) -> None:
            with torch.inference_mode():
                model(graphs.slice(chunks[i]))

        return run, len(chunks)

    n_params = sum(p.numel() for p in model.parameters())
    mean_nodes = graphs.n_nodes / len(graphs)
    mean_edges = graphs.n_edges / len(graphs)
    print(f"torch {torch.__version__}, threads={args.threads}, params={n_params:,}")
    print(f"{n_data} compositions, on average {mean_nodes:.2f} nodes and {mean_edges:.1f} edges")
    print(f"graph build: {build_ms:.1f} ms for {n_data} compositions")
    n_steps = len(batches)
    seconds = time_calls(slice_batch, n_steps, args.repeats)
    report(f"slice only, batch {args.batch}", seconds, args.batch)
    model.train()
    seconds = time_calls(train_step, n_steps, args.repeats)
    report(f"training,   batch {args.batch}", seconds, args.batch)
    model.eval()
    for batch_size in sorted({args.batch, 256, 1024} & set(range(1, n_data + 1))):
        run, n_calls = infer(batch_size)
        seconds = time_calls(run, n_calls, args.repeats)
        report(f"inference,  batch {batch_size}", seconds, batch_size)


if __name__ == "__main__":
    main()
