"""OQMD formation enthalpy on the thesis' test split: matlake's Roost against aviary-models' at an equal wall-clock budget.

    bench-venv/bin/python bench/bench_roost_oqmd.py matlake --budget-min 60 [--threads 1] [--run NAME]
    bench-venv/bin/python bench/bench_roost_oqmd.py aviary  --budget-min 60 [--threads 1]
    bench-venv/bin/python bench/bench_roost_oqmd.py summary

Data (``../shared/data/oqmd``): the test set is ``aviary_oqmd_test.csv`` (25,662 rows), the 10% test split of the
256,620-material ElemNet OQMD set that the thesis reports on. Training rows are both
``crabnet_OQMD_Formation_Enthalpy_{val,test}.csv`` (102,510 rows) minus every row whose composition also occurs in that
test file (fractional composition rounded to 3 decimals): about 95,000 rows, 41% of the thesis' 230,958.

Both contenders use the thesis' hyper-parameters (Adam, lr 3e-4, batch 128, weight decay 1e-6, robust loss) and keep
their final weights (no test rows for model selection). ``--budget-min`` is wall-clock training time; run the two
commands at the same time with ``--threads 1`` each for an equal comparison on a 2-core machine. matlake's run writes
a checkpoint after every epoch (``train_member(checkpoint=...)``), so ``matlake --run best --budget-min N`` continues
a longer run across sessions, and ``matlake --run NAME --init-from matlake --lr 3e-5 --epochs N`` continues the
equal-budget run's final weights at a lower learning rate (a fresh optimiser; the thesis keeps 3e-4 throughout).
Results go to ``bench/results/oqmd/<run>.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import matlake  # noqa: F401  (first: its OpenMP setting must precede torch's start)
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "oqmd"
RESULTS = ROOT / "bench" / "results" / "oqmd"


def _read(name: str, formula_col: str) -> tuple[list[str], np.ndarray]:
    path = DATA / name
    if not path.is_file():
        raise SystemExit(f"needs {path} (the shared data directory is absent)")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [r[formula_col] for r in rows], np.array([float(r["target"]) for r in rows])


def _key(fractions: dict[str, float]) -> tuple:
    return tuple(sorted((el, round(x, 3)) for el, x in fractions.items()))


def load_data(limit: int | None = None) -> dict:
    from matlake.ingest.formulas import parse_formula

    test_f, test_y = _read("aviary_oqmd_test.csv", "composition")
    test_parsed = [parse_formula(f) for f in test_f]
    test_keys = {_key(p.fractions) for p in test_parsed}
    train_f, train_y = [], []
    n_read = n_overlap = 0
    for name in ("crabnet_OQMD_Formation_Enthalpy_val.csv", "crabnet_OQMD_Formation_Enthalpy_test.csv"):
        formulas, y = _read(name, "formula")
        for f, target in zip(formulas, y, strict=True):
            n_read += 1
            if _key(parse_formula(f).fractions) in test_keys:
                n_overlap += 1
                continue
            train_f.append(f)
            train_y.append(target)
    if limit:
        train_f, train_y = train_f[:limit], train_y[:limit]
    print(f"training rows: {n_read:,} read, {n_overlap:,} share a composition with the test set, "
          f"{len(train_f):,} kept; test rows {len(test_f):,}", flush=True)
    return {"train_f": train_f, "train_y": np.array(train_y), "test_f": test_f, "test_y": test_y,
            "test_amounts": [dict(p.amounts) for p in test_parsed],
            "n_read": n_read, "n_overlap": n_overlap}


def run_matlake(args: argparse.Namespace) -> dict:
    from matlake.ingest.formulas import parse_formula
    from matlake.modelling.ensemble import member_predictions
    from matlake.modelling.train import TrainConfig, train_member

    data = load_data(args.limit)
    started = time.perf_counter()
    train_amounts = [dict(parse_formula(f).amounts) for f in data["train_f"]]
    config = TrainConfig(epochs=args.epochs or 100_000, seed=args.seed, threads=args.threads, device="cpu",
                         time_budget_s=args.budget_min * 60, learning_rate=args.lr)
    init_state = None
    if args.init_from:  # continue another run's final weights (fresh optimiser), e.g. at a lower learning rate
        source = torch.load(RESULTS / f"{args.init_from}.ckpt", weights_only=True)
        init_state = {k: v.numpy() for k, v in source["model"].items()}
        print(f"initialised from {args.init_from} after {source['epoch']} epochs "
              f"({source['seconds'] / 60:.0f} min)", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = train_member(train_amounts, data["train_y"], [], [], config, init_state,
                          checkpoint=RESULTS / f"{args.run}.ckpt")
    mean = member_predictions([result.state], result.hparams, result.normaliser, data["test_amounts"])[0][0]
    return _report(args.run, "matlake", data, mean, len(result.history), result.seconds,
                   time.perf_counter() - started, args)


def run_aviary(args: argparse.Namespace) -> dict:
    import pandas as pd
    from aviary.core import Normalizer
    from aviary.losses import robust_l1_loss
    from aviary.roost.data import CompositionData, collate_batch
    from aviary.roost.model import Roost
    from torch.utils.data import DataLoader

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = load_data(args.limit)
    started = time.perf_counter()
    task = {"target": "regression"}
    train_df = pd.DataFrame({"material_id": range(len(data["train_f"])), "composition": data["train_f"],
                             "target": data["train_y"]})
    test_df = pd.DataFrame({"material_id": range(len(data["test_f"])), "composition": data["test_f"],
                            "target": data["test_y"]})
    train_loader = DataLoader(CompositionData(train_df, task_dict=task), batch_size=128, shuffle=True,
                              collate_fn=collate_batch)
    model = Roost(robust=True, n_targets=[1], task_dict=task, device="cpu", elem_embedding="matscholar200")
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=1e-6)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda epoch: 1.0)
    normalizer = Normalizer()
    normalizer.fit(torch.tensor(data["train_y"], dtype=torch.float32))
    epochs = 0
    while time.perf_counter() - started < args.budget_min * 60:
        model.fit(train_loader, None, optimiser, scheduler, epochs=1,
                  loss_dict={"target": ("regression", robust_l1_loss)}, normalizer_dict={"target": normalizer},
                  model_name="bench-oqmd", run_id=0, checkpoint=False, writer=None, verbose=False)
        epochs += 1
        print(f"aviary epoch {epochs}: {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    train_seconds = time.perf_counter() - started
    model.eval()
    means = []
    with torch.no_grad():
        for inputs, *_ in DataLoader(CompositionData(test_df, task_dict=task), batch_size=512,
                                     collate_fn=collate_batch):
            out = model(*inputs)[0]
            means.append(normalizer.denorm(out[:, 0]).numpy())
    return _report(args.run or "aviary", "aviary-models", data, np.concatenate(means), epochs, train_seconds,
                   time.perf_counter() - started, args)


def _report(run: str, who: str, data: dict, mean: np.ndarray, epochs: int, train_seconds: float,
            total_seconds: float, args: argparse.Namespace) -> dict:
    import os

    y = data["test_y"]
    result = {"run": run, "implementation": who, "test_mae": float(np.mean(np.abs(mean - y))),
              "test_rmse": float(np.sqrt(np.mean((mean - y) ** 2))), "epochs": epochs,
              "train_minutes": train_seconds / 60, "total_minutes": total_seconds / 60, "threads": args.threads,
              "budget_min": args.budget_min, "learning_rate": args.lr, "init_from": args.init_from,
              "n_train": len(data["train_f"]), "n_test": len(y),
              "load_average_end": os.getloadavg()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{run}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1), flush=True)
    return result


def summary() -> None:
    for path in sorted(RESULTS.glob("*.json")):
        r = json.loads(path.read_text())
        print(f"{r['run']:>12} {r['implementation']:>14}: test MAE {r['test_mae']:.4f} eV/atom after {r['epochs']} "
              f"epochs in {r['train_minutes']:.0f} min ({r['threads']} threads)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("who", choices=["matlake", "aviary", "summary"])
    parser.add_argument("--budget-min", type=float, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="first N training rows only (a smoke test)")
    parser.add_argument("--lr", type=float, default=3e-4, help="learning rate (thesis: 3e-4)")
    parser.add_argument("--epochs", type=int, default=None, help="stop after this many epochs (default: the budget)")
    parser.add_argument("--init-from", default=None, help="start from this run's checkpointed final weights")
    parser.add_argument("--run", default=None, help="result and checkpoint name (default: the implementation)")
    args = parser.parse_args()
    if args.who == "summary":
        summary()
    elif args.who == "matlake":
        args.run = args.run or "matlake"
        run_matlake(args)
    else:
        run_aviary(args)


if __name__ == "__main__":
    main()
