"""Roost training and inference speed: matlake against aviary-models' Roost, side by side in one run.

    make bench-env   # a separate virtual environment with matlake and aviary-models (never a matlake dependency)
    bench-venv/bin/python bench/bench_roost_vs_aviary.py [--epochs 3] [--repeats 3] [--threads 2]

Same data (the 3,116 training rows of the experimental band gaps, split A), same hyper-parameters (the thesis':
Matscholar embedding, 3 message-passing layers x 3 heads, 256-unit gate/message networks, output 1024-512-256-128-64,
robust loss, Adam lr 3e-4, weight decay 1e-6, batch 128, shuffled), same torch threads. Each library trains the way it
is meant to be used: matlake's ``train_member`` (flat tensors built once, sliced per batch) and aviary's
``CompositionData`` + ``DataLoader(collate_batch)`` + ``model.fit`` (no checkpoints, no validation). aviary caches its
per-sample graphs after the first epoch, so one warm-up epoch of each is run and discarded; then the two are
interleaved ``--repeats`` times so that load from other processes hits both alike. A rate is training samples per
second over the epochs of a repeat; the best repeat is the least disturbed one, the median is printed too.
Inference: predictions per second at batch 256 (both in eval mode without gradients), same interleaving.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import matlake  # noqa: F401  (first: its OpenMP setting must precede torch's start)
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "expt" / "aviary_expt-non-metals.csv"
TARGET = "Eg"


def load_rows() -> tuple[list[str], np.ndarray]:
    from sklearn.model_selection import train_test_split

    if not DATA.is_file():
        raise SystemExit(f"needs {DATA} (the shared data directory is absent)")
    with DATA.open(newline="") as f:
        rows = list(csv.DictReader(f))
    train, _ = train_test_split(np.arange(len(rows)), test_size=0.2, random_state=0)
    return [rows[i]["composition"] for i in train], np.array([float(rows[i][TARGET]) for i in train])


class Matlake:
    """matlake's Roost: ``train_member`` for training, ``predict_graphs`` for inference."""

    name = "matlake"

    def __init__(self, formulas: list[str], y: np.ndarray, threads: int) -> None:
        from matlake.ingest.formulas import parse_formula
        from matlake.modelling.batching import CompositionGraphs
        from matlake.modelling.models.roost import Roost
        from matlake.modelling.train import element_table

        self.comps = [dict(parse_formula(f).amounts) for f in formulas]
        self.y = y
        self.threads = threads
        embedding, index = element_table()
        self.graphs = CompositionGraphs.from_compositions(self.comps, index)
        self.model = Roost(embedding)
        print(f"matlake Roost: {sum(p.numel() for p in self.model.parameters()):,} parameters")

    def train(self, epochs: int) -> float:
        from matlake.modelling.train import TrainConfig, train_member

        started = time.perf_counter()
        train_member(self.comps, self.y, [], [], TrainConfig(epochs=epochs, seed=0, threads=self.threads,
                                                             device="cpu"))
        return len(self.comps) * epochs / (time.perf_counter() - started)

    def infer(self) -> float:
        from matlake.modelling.train import predict_graphs

        started = time.perf_counter()
        predict_graphs(self.model, self.graphs, 0.0, 1.0, "cpu", batch_size=256)
        return len(self.graphs) / (time.perf_counter() - started)


class Aviary:
    """aviary-models' Roost, through its own dataset, collate function and ``fit``."""

    name = "aviary-models"

    def __init__(self, formulas: list[str], y: np.ndarray, threads: int) -> None:
        import pandas as pd
        from aviary.roost.data import CompositionData, collate_batch
        from aviary.roost.model import Roost

        df = pd.DataFrame({"material_id": range(len(formulas)), "composition": formulas, TARGET: y})
        self.task_dict = {TARGET: "regression"}
        self.data = CompositionData(df, task_dict=self.task_dict)
        self.collate = collate_batch
        self.roost_cls = Roost
        self.n = len(df)
        self.model = self._new_model()
        print(f"aviary Roost: {sum(p.numel() for p in self.model.parameters()):,} parameters")
        self.infer()  # fills the dataset's per-sample cache, as aviary's first epoch does

    def _new_model(self):
        return self.roost_cls(robust=True, n_targets=[1], task_dict=self.task_dict, device="cpu",
                              elem_embedding="matscholar200")

    def _loader(self, batch_size: int, shuffle: bool):
        from torch.utils.data import DataLoader

        return DataLoader(self.data, batch_size=batch_size, shuffle=shuffle, collate_fn=self.collate)

    def train(self, epochs: int) -> float:
        from aviary.core import Normalizer
        from aviary.losses import robust_l1_loss

        torch.manual_seed(0)
        model = self._new_model()
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=1e-6)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
        normalizer = Normalizer()
        normalizer.fit(torch.tensor(self.data.df[TARGET].to_numpy(), dtype=torch.float32))
        started = time.perf_counter()
        model.fit(self._loader(128, True), None, optimizer, scheduler, epochs=epochs,
                  loss_dict={TARGET: ("regression", robust_l1_loss)}, normalizer_dict={TARGET: normalizer},
                  model_name="bench", run_id=0, checkpoint=False, writer=None, verbose=False)
        return self.n * epochs / (time.perf_counter() - started)

    @torch.no_grad()
    def infer(self) -> float:
        self.model.eval()
        started = time.perf_counter()
        for inputs, *_ in self._loader(256, False):
            self.model(*inputs)
        return self.n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    formulas, y = load_rows()
    contenders = [Matlake(formulas, y, args.threads), Aviary(formulas, y, args.threads)]
    for c in contenders:  # warm-up: allocator, thread pool, aviary's per-sample cache
        c.train(1)
    train_rates: dict[str, list[float]] = {c.name: [] for c in contenders}
    infer_rates: dict[str, list[float]] = {c.name: [] for c in contenders}
    for repeat in range(args.repeats):
        for c in contenders:
            train_rates[c.name].append(c.train(args.epochs))
            infer_rates[c.name].append(max(c.infer() for _ in range(3)))
        print(f"repeat {repeat}: " + ", ".join(f"{n} {r[-1]:,.0f} train samples/s" for n, r in train_rates.items()),
              flush=True)
    print(f"\n{len(formulas)} training rows, {args.epochs} epochs per repeat, {args.threads} torch threads, "
          f"load average {' '.join(f'{x:.1f}' for x in __import__('os').getloadavg())}")
    for label, rates in (("training samples/s", train_rates), ("inference predictions/s", infer_rates)):
        ours, theirs = rates["matlake"], rates["aviary-models"]
        print(f"{label}: matlake {max(ours):,.0f} (median {statistics.median(ours):,.0f}), aviary-models "
              f"{max(theirs):,.0f} (median {statistics.median(theirs):,.0f}); ratio {max(ours) / max(theirs):.2f}x "
              f"best, {statistics.median(ours) / statistics.median(theirs):.2f}x median")


if __name__ == "__main__":
    main()
