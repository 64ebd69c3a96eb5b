"""Roost accuracy on the experimental band gaps (thesis ch. 4; issue "Models I"), beside RF+Magpie on the same rows.

    python bench/bench_roost_accuracy.py train --task ex-A --members 0-9 [--epochs 150] [--threads 1] [--tag NAME]
    python bench/bench_roost_accuracy.py summary --task ex-A
    python bench/bench_roost_accuracy.py summary --task matbench     # mean over the five fold summaries

Tasks (all read ``../shared/data``; nothing is copied into the repository):

- ``ex-A``: ``expt/aviary_expt-non-metals.csv`` (3,895 rows), scikit-learn ``train_test_split(test_size=0.2,
  random_state=0)`` over rows. The file repeats compositions, so about 350 of the test compositions also occur in
  training: this split flatters every model.
- ``ex-B``: the same rows, ``GroupShuffleSplit(test_size=0.2, random_state=0)`` grouped by reduced composition
  (pymatgen ``reduced_formula``): no test composition is seen in training.
- ``matbench-F`` (F = 0..4): ``expt/crabnet_matbench_expt_gap.csv`` (4,604 rows), the matbench protocol:
  ``KFold(5, shuffle=True, random_state=18012019)``, fold F held out.
- ``mp-gaps``: ``mp/aviary_mp-non-metals.csv`` (Materials Project band gaps), every row for training; its members
  minus every composition that also occurs in EX (as in the thesis); its members are the starting points of
  ``ex-A-transfer``, which fine-tunes member k of ``mp-gaps`` on split A's training rows (every weight retrained),
  to compare with ``ex-A`` trained from scratch.

``train`` trains the listed members (seed = member number) with the thesis' hyper-parameters (Adam, lr 3e-4,
batch 128, weight decay 1e-6, robust Laplace loss) for ``--epochs`` epochs and keeps the final weights: no test rows
are used for early stopping or model selection. Each member's test predictions (mean and aleatoric sigma) are saved to
``bench/results/<task>/member_<k>.npz`` (committed, without the targets, which are read from the shared data) as soon as it
finishes, so members can be trained by several processes (one
per core) and over several sessions. ``summary`` fits RF+Magpie (scikit-learn, 200 trees, max_features 0.25,
matlake's vectorised Magpie features) on the same training rows and prints single-member and ensemble MAEs, the
ensemble's Spearman correlation between total std and absolute error and its confidence curve, and writes
``summary.json`` next to the members, with the ensemble's parity, confidence-error and calibration figures
(``ensemble_*.png``, ``matlake.modelling.evaluation``).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matlake.ingest.formulas import parse_formula
from matlake.modelling.ensemble_stats import combine_members
from matlake.modelling.metrics import confidence_curve, regression_metrics

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"
MATBENCH_SEED = 18012019
QUANTITY = {"ex": "experimental band gap", "matbench": "experimental band gap", "mp": "band gap"}


@dataclass(frozen=True)
class Task:
    name: str
    train_formulas: list[str]
    train_y: np.ndarray
    test_formulas: list[str]
    test_y: np.ndarray
    init_from: str | None = None  # task whose member k initialises member k (transfer learning)


def _read_csv(rel: str, formula_col: str, target_col: str) -> tuple[list[str], np.ndarray]:
    path = SHARED_DATA / rel
    if not path.is_file():
        raise SystemExit(f"needs {path} (the shared data directory is absent)")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [r[formula_col] for r in rows], np.array([float(r[target_col]) for r in rows])


def load_task(name: str) -> Task:
    from sklearn.model_selection import GroupShuffleSplit, KFold, train_test_split

    if name.startswith("ex-"):
        formulas, y = _read_csv("expt/aviary_expt-non-metals.csv", "composition", "Eg")
        rows = np.arange(len(formulas))
        if name in ("ex-A", "ex-A-transfer"):
            train, test = train_test_split(rows, test_size=0.2, random_state=0)
        elif name == "ex-B":
            from pymatgen.core import Composition

            groups = [Composition(f).reduced_formula for f in formulas]
            train, test = next(GroupShuffleSplit(test_size=0.2, random_state=0).split(rows, groups=groups))
        else:
            raise SystemExit(f"unknown task {name}")
        init = "mp-gaps" if name == "ex-A-transfer" else None
        return Task(name, [formulas[i] for i in train], y[train], [formulas[i] for i in test], y[test], init)
    if name.startswith("matbench-"):
        fold = int(name.split("-")[1])
        formulas, y = _read_csv("expt/crabnet_matbench_expt_gap.csv", "formula", "target")
        folds = list(KFold(n_splits=5, shuffle=True, random_state=MATBENCH_SEED).split(formulas))
        train, test = folds[fold]
        return Task(name, [formulas[i] for i in train], y[train], [formulas[i] for i in test], y[test])
    if name == "mp-gaps":
        # as in the thesis, every MP composition that also occurs in EX is removed, so that the fine-tuned model's
        # EX test set was never seen in pre-training either
        formulas, y = _read_csv("mp/aviary_mp-non-metals.csv", "composition", "band_gap")
        ex = {_key(f) for f in _read_csv("expt/aviary_expt-non-metals.csv", "composition", "Eg")[0]}
        keep = [i for i, f in enumerate(formulas) if _key(f) not in ex]
        print(f"mp-gaps: {len(formulas):,} rows, {len(formulas) - len(keep):,} share a composition with EX, "
              f"{len(keep):,} kept", flush=True)
        return Task(name, [formulas[i] for i in keep], y[keep], [], y[:0])
    raise SystemExit(f"unknown task {name}")


def amounts(formulas: list[str]) -> list[dict[str, float]]:
    return [dict(parse_formula(f).amounts) for f in formulas]


def member_range(text: str) -> list[int]:
    if "-" in text:
        first, last = (int(x) for x in text.split("-"))
        return list(range(first, last + 1))
    return [int(x) for x in text.split(",")]


def train(args: argparse.Namespace) -> None:
    from matlake.modelling.ensemble import member_predictions
    from matlake.modelling.train import TrainConfig, train_member

    task = load_task(args.task)
    out = results_dir(task.name, args.tag)
    out.mkdir(parents=True, exist_ok=True)
    train_comps, test_comps = amounts(task.train_formulas), amounts(task.test_formulas)
    for k in member_range(args.members):
        target = out / f"member_{k}.npz"
        if target.exists():
            print(f"{task.name} member {k}: already trained ({target})")
            continue
        init_state = None
        if task.init_from:
            parent = RESULTS / task.init_from / f"member_{k}.weights.npz"
            if not parent.exists():
                raise SystemExit(f"{task.name} member {k} needs {parent}: train {task.init_from} first")
            init_state = dict(np.load(parent))
        config = TrainConfig(epochs=args.epochs, seed=k, threads=args.threads, device="cpu")
        started = time.perf_counter()
        result = train_member(train_comps, task.train_y, [], [], config, init_state)
        seconds = time.perf_counter() - started
        info = {"member": k, "epochs": args.epochs, "seconds": seconds, "samples_per_second": result.samples_per_second,
                "n_train": len(train_comps), "n_test": len(test_comps), "threads": args.threads,
                "final_train_loss": result.history[-1]["train_loss"], "init_from": task.init_from}
        if args.save_weights:
            np.savez(out / f"member_{k}.weights.npz", **result.state)
        if test_comps:
            means, sigmas = member_predictions([result.state], result.hparams, result.normaliser, test_comps)
            mean, sigma = means[0], sigmas[0]
            info["test_mae"] = float(np.mean(np.abs(mean - task.test_y)))
            np.savez(target, mean=mean, sigma=sigma)  # the targets are read from the shared data, never stored
        else:
            np.savez(target, mean=np.zeros(0), sigma=np.zeros(0))
        (out / f"member_{k}.json").write_text(json.dumps(info, indent=1))
        print(f"{task.name} member {k}: {seconds / 60:.1f} min, {result.samples_per_second:,.0f} samples/s, "
              f"test MAE {info.get('test_mae', float('nan')):.4f}", flush=True)


def results_dir(task: str, tag: str | None) -> Path:
    """``bench/results/<task>``, or ``<task>+<tag>`` for a variant (e.g. a longer schedule) kept beside it."""
    return RESULTS / (f"{task}+{tag}" if tag else task)


def random_forest_mae(task: Task, seed: int = 0) -> tuple[float, float]:
    from sklearn.ensemble import RandomForestRegressor

    from matlake.featurestore.magpie import magpie_features

    X_train, X_test = magpie_features(amounts(task.train_formulas)), magpie_features(amounts(task.test_formulas))
    started = time.perf_counter()
    forest = RandomForestRegressor(n_estimators=200, max_features=0.25, random_state=seed, n_jobs=2)
    forest.fit(X_train, task.train_y)
    return float(np.mean(np.abs(forest.predict(X_test) - task.test_y))), time.perf_counter() - started


def summary(args: argparse.Namespace) -> dict:
    task = load_task(args.task)
    out = results_dir(task.name, args.tag)
    files = sorted(out.glob("member_*.npz"), key=lambda p: int(p.stem.split("_")[1]))
    files = [f for f in files if not f.name.endswith(".weights.npz")]
    if not files:
        raise SystemExit(f"no members in {out}: run `train --task {task.name}` first")
    loaded = [np.load(f) for f in files]
    means, sigmas = np.stack([d["mean"] for d in loaded]), np.stack([d["sigma"] for d in loaded])
    y = task.test_y
    if any(len(m) != len(y) for m in means):
        raise SystemExit(f"member predictions in {out} do not match the {len(y)} test rows of {task.name}")
    singles = [float(np.mean(np.abs(m - y))) for m in means]
    stats = combine_members(means, sigmas)
    metrics = regression_metrics(y, stats["mean"], stats["total_std"])
    curve = confidence_curve(y, stats["mean"], stats["total_std"], steps=11)
    rf_mae, rf_seconds = random_forest_mae(task)
    infos = [json.loads(f.with_suffix(".json").read_text()) for f in files]
    result = {
        "task": task.name, "n_train": len(task.train_formulas), "n_test": len(y), "members": len(files),
        "epochs": infos[0]["epochs"], "single_mae": singles, "single_mae_mean": float(np.mean(singles)),
        "ensemble": metrics, "rf_magpie_mae": rf_mae, "rf_fit_seconds": rf_seconds,
        "member_minutes": [i["seconds"] / 60 for i in infos],
        "confidence_curve": {k: [round(float(v), 4) for v in vals] for k, vals in curve.items()},
        "test_compositions_seen_in_training": int(len({_key(f) for f in task.test_formulas}
                                                       & {_key(f) for f in task.train_formulas})),
    }
    from matlake.modelling.evaluation import evaluate

    figures = evaluate(y, stats["mean"], stats["total_std"], quantity=QUANTITY.get(task.name.split("-")[0], "target"),
                       unit="eV")
    figures.save(out, "ensemble")  # parity, confidence-error and calibration PNGs + their metrics
    result["evaluation"] = figures.metrics
    (out / "summary.json").write_text(json.dumps(result, indent=1))
    print(f"{task.name}: {len(task.train_formulas)} train / {len(y)} test rows, {len(files)} members x "
          f"{result['epochs']} epochs")
    print(f"  single members MAE: mean {np.mean(singles):.4f} (min {min(singles):.4f}, max {max(singles):.4f})")
    print(f"  ensemble of {len(files)}: MAE {metrics['mae']:.4f}, RMSE {metrics['rmse']:.4f}, R2 {metrics['r2']:.3f}, "
          f"Spearman(|error|, total std) {metrics['spearman_abs_error_std']:.3f}")
    print(f"  RF+Magpie (200 trees, max_features 0.25): MAE {rf_mae:.4f}")
    removed = curve["removed_fraction"]
    print("  confidence curve (removed most uncertain -> MAE by std / random / by error):")
    for f, a, b, c in zip(removed, curve["mae_by_std"], curve["mae_random"], curve["mae_by_error"], strict=True):
        print(f"    {f:4.0%}: {a:.4f} / {b:.4f} / {c:.4f}")
    return result


def matbench_summary() -> None:
    """Mean over the five folds of the per-fold summaries (run ``summary --task matbench-F`` for each fold first)."""
    folds = [json.loads((RESULTS / f"matbench-{k}" / "summary.json").read_text()) for k in range(5)
             if (RESULTS / f"matbench-{k}" / "summary.json").exists()]
    if len(folds) < 5:
        raise SystemExit(f"{len(folds)} of 5 folds summarised: train and summarise matbench-0 .. matbench-4 first")
    roost = [f["ensemble"]["mae"] for f in folds]
    forest = [f["rf_magpie_mae"] for f in folds]
    print(f"matbench_expt_gap, {folds[0]['members']} member(s) x {folds[0]['epochs']} epochs per fold:")
    print(f"  Roost     MAE per fold {', '.join(f'{x:.3f}' for x in roost)}; mean {np.mean(roost):.4f}")
    print(f"  RF+Magpie MAE per fold {', '.join(f'{x:.3f}' for x in forest)}; mean {np.mean(forest):.4f}")


def _key(formula: str) -> tuple:
    return tuple(sorted((el, round(f, 4)) for el, f in parse_formula(formula).fractions.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--task", required=True)
    t.add_argument("--members", default="0-9")
    t.add_argument("--epochs", type=int, default=150)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--save-weights", action="store_true", help="keep the weights (pre-training for transfer)")
    s = sub.add_parser("summary")
    s.add_argument("--task", required=True)
    for p in (t, s):
        p.add_argument("--tag", default=None, help="a variant's name: results in bench/results/<task>+<tag>")
    args = parser.parse_args()
    if args.command == "train":
        train(args)
    elif args.task == "matbench":
        matbench_summary()
    else:
        summary(args)


if __name__ == "__main__":
    main()
