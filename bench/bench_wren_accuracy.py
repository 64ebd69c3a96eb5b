"""Wren against Roost and RF+Magpie on the structure data sets reachable here (thesis ch. 6; issue "Models II").

    python bench/bench_wren_accuracy.py train --task phonons --folds 0-4 --model wren --members 0-2 [--epochs 300]
    python bench/bench_wren_accuracy.py summary --task phonons

Tasks (all read ``../shared/data``; nothing is copied into the repository, derived labels are cached in /tmp):

- ``phonons``: ``mp/aviary_matbench_phonons.json.gz``, 1,265 MP structures, target the last phonon DOS peak in
  cm^-1; the matbench protocol, ``KFold(5, shuffle=True, random_state=18012019)``.
- ``lifeo``: ``mp/emmet_Li-Fe-O_cses.json.gz``, 375 MP entries (GGA and GGA+U with MP's corrections, 113
  compositions, 1,800 same-composition pairs); target the formation energy per atom against the lowest-energy
  entry of each element in the file; ``GroupKFold(5)`` grouped by reduced composition, so that every polymorph of a
  composition is in the same test fold: each pair is ranked by one model that has seen neither (as for a new
  composition being screened), and a composition-only model ties on every pair.
- ``taata``: ``taata/aviary_examples.json``, 68 Ti/Zr/Hf-Zn-N structures with formation energies (60 compositions,
  11 same-composition pairs: few); folds as ``lifeo``.
- ``lifeo-random``: ``lifeo`` with ``KFold(5, shuffle=True, random_state=0)`` over entries: other polymorphs of a
  test composition may be in training (a known composition's structures being ranked); pairs are scored within
  each test fold.
- ``3dsc``: the 10,904 3DSC MP rows with their Tc (3DSC's, else Stanev's), target log(1 + Tc); one split,
  ``GroupShuffleSplit(test_size=0.2, random_state=0)`` grouped by the reduced SuperCon formula. Wren reads the
  label of each row's MP parent (``threedsc_parents``: every site given its majority element, since a doped
  structure has no Wyckoff representation); Roost reads the doped SuperCon formula (``roost``) or, like for like,
  the parent's composition (``roost-parent``).

Protostructure labels come from matlake's featurestore (moyopy, ``--symprec`` in Angstrom, default 0.1 as in the
thesis). A row without a valid label is excluded from every model and counted, so all models see the same rows.

``train`` trains the listed members (seed = member number) with the thesis' hyper-parameters (Roost: Adam; Wren:
AdamW; lr 3e-4, batch 128, weight decay 1e-6, robust Laplace loss) and keeps the final weights: no test rows are
used for early stopping (how a variant's settings were chosen, e.g. Wren's dropout rate, is said in the
README). Each member's test predictions go to ``bench/results/wren/<task>/fold<F>/`` as
``<model>_member_<k>.npz`` (mean, sigma and the test rows' indices; for a Wren with ``sym_dropout`` also the
mean without its symmetry channel, the other mode it was trained in; committed so that later sessions can add members
to an ensemble; the targets are never stored, they are read from the shared data) with a JSON of its timings.
``summary`` fits RF+Magpie (scikit-learn, 200 trees, max_features 0.25) on the same rows and prints, per model, the
single-member and ensemble MAE per fold and their mean (and the ensemble's median absolute error: is a gap broad, or a
few large errors?); for ``lifeo`` and ``taata`` also the pairwise polymorph
ranking accuracy (``matlake.modelling.metrics.pairwise_ranking_accuracy``: pairs of entries with the same reduced
composition, all in one test fold; a tie counts one half, so Roost, which cannot tell polymorphs apart, scores 0.5); for ``3dsc`` the MAE in kelvin.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from dataclasses import dataclass
from pathlib import Path

import matlake  # noqa: F401  (first: its OpenMP setting must precede torch's start)
import numpy as np
from bench_roost_accuracy import member_range

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results" / "wren"
LABEL_CACHE = Path("/tmp/matlake-bench-labels")
MATBENCH_SEED = 18012019
UNITS = {"phonons": "cm^-1", "lifeo": "eV/atom", "lifeo-random": "eV/atom", "taata": "eV/atom",
         "3dsc": "log(1 + Tc/K)"}
MODELS = ("wren", "roost", "roost-parent")


@dataclass(frozen=True)
class Dataset:
    """Rows with a valid protostructure label, their inputs for each model, targets and folds."""

    name: str
    ids: list[str]
    labels: list[str]  # Wren
    formulas: list[str]  # Roost and RF
    parent_formulas: list[str]  # the label's own composition (equal to ``formulas`` except for 3DSC)
    y: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]
    n_read: int
    excluded: dict[str, int]

    def inputs(self, model: str) -> list:
        from matlake.ingest.formulas import parse_formula

        if model == "wren":
            return self.labels
        formulas = self.parent_formulas if model == "roost-parent" else self.formulas
        return [dict(parse_formula(f).amounts) for f in formulas]


def _structures(task: str) -> tuple[list[str], list, np.ndarray]:
    """ids, pymatgen structures and targets of a structure task."""
    from pymatgen.core import Structure

    if task == "phonons":
        raw = json.loads(gzip.open(SHARED_DATA / "mp" / "aviary_matbench_phonons.json.gz").read())
        ids = [f"phonons-{i}" for i in raw["index"]]
        return ids, [Structure.from_dict(r[0]) for r in raw["data"]], np.array([r[1] for r in raw["data"]], float)
    if task == "lifeo":
        from pymatgen.entries.computed_entries import ComputedStructureEntry

        entries = [ComputedStructureEntry.from_dict(d) for d in
                   json.loads(gzip.open(SHARED_DATA / "mp" / "emmet_Li-Fe-O_cses.json.gz").read())]
        reference = {}
        for e in entries:  # the lowest corrected energy per atom of each element's own entries
            if len(e.composition.elements) == 1:
                el = e.composition.elements[0].symbol
                reference[el] = min(reference.get(el, np.inf), e.energy_per_atom)
        y = [(e.energy - sum(n * reference[el.symbol] for el, n in e.composition.items())) / e.composition.num_atoms
             for e in entries]
        return [e.entry_id for e in entries], [e.structure for e in entries], np.array(y)
    if task == "taata":
        raw = json.loads((SHARED_DATA / "taata" / "aviary_examples.json").read_text())
        keys = sorted(raw["material_id"], key=int)
        return ([raw["material_id"][k] for k in keys], [Structure.from_dict(raw["structure"][k]) for k in keys],
                np.array([raw["E_f"][k] for k in keys], float))
    raise SystemExit(f"unknown task {task}")


def _labels(task: str, structures: list, symprec: float) -> list[str | None]:
    """The valid protostructure label of every structure (None: none), cached per task and tolerance."""
    from matlake.featurestore.protostructure import protostructure_row

    cache = LABEL_CACHE / f"{task}_symprec{symprec}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    started = time.perf_counter()
    rows = [protostructure_row(s, symprec=symprec) for s in structures]
    labels = [r["protostructure"] if r["is_valid"] else None for r in rows]
    print(f"{task}: labelled {len(labels)} structures in {time.perf_counter() - started:.1f} s (symprec {symprec})")
    LABEL_CACHE.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(labels))
    return labels


def load(task: str, symprec: float = 0.1) -> Dataset:
    random_folds = task.endswith("-random")
    task = task.removesuffix("-random")
    from pymatgen.core import Composition
    from sklearn.model_selection import GroupKFold, GroupShuffleSplit, KFold

    if task == "3dsc":
        import threedsc_parents

        if not threedsc_parents.available():
            raise SystemExit(f"needs {threedsc_parents.TABLE} and {threedsc_parents.ARCHIVE}")
        if symprec != 0.1:
            raise SystemExit("3dsc: the parent labels are computed at symprec 0.1 only")
        rows = threedsc_parents.rows()
        by_mp = threedsc_parents.parent_labels()
        with_tc = [(r, _tc(r)) for r in rows]
        n_no_tc = sum(tc is None for _, tc in with_tc)
        # Roost reads the SuperCon formula: one the formula parser refuses (e.g. 'Mn0') leaves every model's rows
        parses = [tc is not None and _parses(r["formula_sc"]) for r, tc in with_tc]
        n_bad_formula = sum(tc is not None and not ok for (_, tc), ok in zip(with_tc, parses, strict=True))
        keep_tc = [(r, tc) for (r, tc), ok in zip(with_tc, parses, strict=True) if ok and by_mp.get(r["mp_id"])]
        keep = [r for r, _ in keep_tc]
        labels = [by_mp[r["mp_id"]] for r in keep]
        from matlake.modelling.wyckoff_graphs import protostructure_composition

        parents = [Composition(protostructure_composition(lab)).formula for lab in labels]
        formulas = [r["formula_sc"] for r in keep]
        y = np.log1p(np.array([tc for _, tc in keep_tc]))
        groups = [Composition(f).reduced_formula for f in formulas]
        folds = [next(GroupShuffleSplit(test_size=0.2, random_state=0).split(formulas, groups=groups))]
        return Dataset(task, [r["file"] for r in keep], labels, formulas, parents, y, folds, len(rows),
                       {"no Tc": n_no_tc, "formula not parsed": n_bad_formula,
                        "no valid parent label": len(rows) - len(keep) - n_no_tc - n_bad_formula})
    ids, structures, y = _structures(task)
    labels = _labels(task, structures, symprec)
    keep = [i for i, lab in enumerate(labels) if lab]
    formulas = [structures[i].composition.formula for i in keep]
    if task == "phonons":
        # matbench folds are drawn over every row; a row without a label leaves its fold (counted in `excluded`)
        splits = KFold(n_splits=5, shuffle=True, random_state=MATBENCH_SEED).split(np.arange(len(ids)))
    elif random_folds:
        splits = KFold(n_splits=5, shuffle=True, random_state=0).split(np.arange(len(ids)))
    else:
        # every polymorph of a composition in one test fold: each pair is ranked by one model that never saw it
        groups = [s.composition.reduced_formula for s in structures]
        splits = GroupKFold(n_splits=5).split(np.arange(len(ids)), groups=groups)
    position = {row: k for k, row in enumerate(keep)}
    folds = [(np.array([position[i] for i in train if i in position]),
              np.array([position[i] for i in test if i in position])) for train, test in splits]
    return Dataset(task + ("-random" if random_folds else ""), [ids[i] for i in keep], [labels[i] for i in keep],
                   formulas, formulas, y[keep], folds,
                   len(ids), {"no valid protostructure": len(ids) - len(keep)})


def _parses(formula: str) -> bool:
    from matlake.ingest.formulas import FormulaError, parse_formula

    try:
        parse_formula(formula)
    except FormulaError:
        return False
    return True


def _tc(row: dict[str, str]) -> float | None:
    """3DSC's Tc, else Stanev's (as the SuperCon ingester reads this table); None when neither is given."""
    for column in ("tc_from_3dsc_icsd", "tc_from_stanev"):
        if row.get(column, "").strip():
            return float(row[column])
    return None


def _dir(task: str, symprec: float, fold: int) -> Path:
    suffix = "" if symprec == 0.1 else f"-symprec{symprec}"
    return RESULTS / f"{task}{suffix}" / f"fold{fold}"


def train(args: argparse.Namespace) -> None:
    from matlake.modelling.ensemble import member_predictions
    from matlake.modelling.train import TrainConfig, train_member

    data = load(args.task, args.symprec)
    inputs = data.inputs(args.model)
    architecture = "wren" if args.model == "wren" else "roost"
    print(f"{data.name}: {data.n_read} rows read, {len(data.y)} kept, excluded {data.excluded}", flush=True)
    hparams = json.loads(args.hparams) if args.hparams else {}
    name = f"{args.model}+{args.tag}" if args.tag else args.model
    for fold in [f for f in member_range(args.folds) if f < len(data.folds)]:
        out = _dir(args.task, args.symprec, fold)
        out.mkdir(parents=True, exist_ok=True)
        train_rows, test_rows = data.folds[fold]
        for k in member_range(args.members):
            target = out / f"{name}_member_{k}.npz"
            if target.exists():
                print(f"{target} exists: skipped")
                continue
            config = TrainConfig(epochs=args.epochs, seed=k, threads=args.threads, device="cpu",
                                 architecture=architecture, hparams=hparams)
            started = time.perf_counter()
            result = train_member([inputs[i] for i in train_rows], data.y[train_rows], [], [], config)
            seconds = time.perf_counter() - started
            states = [result.state]
            if hparams.get("sym_dropout"):
                # the other mode the model was trained in: every crystal without its symmetry channel (a zero
                # projection is what the dropout applies), so summaries can weigh the two modes
                states.append({k: (np.zeros_like(v) if k.startswith("embed_sym.") else v)
                               for k, v in result.state.items()})
            means, sigmas = member_predictions(states, result.hparams, result.normaliser,
                                               [inputs[i] for i in test_rows], architecture=architecture)
            y = data.y[test_rows]
            extra = {"mean_without_symmetry": means[1]} if len(states) > 1 else {}
            np.savez(target, mean=means[0], sigma=sigmas[0], rows=test_rows, **extra)  # targets: from the shared data
            info = {"model": name, "hparams": hparams, "member": k, "fold": fold, "epochs": args.epochs,
                    "seconds": seconds, "samples_per_second": result.samples_per_second, "threads": args.threads,
                    "n_train": len(train_rows), "n_test": len(test_rows),
                    "test_mae": float(np.mean(np.abs(means[0] - y)))}
            target.with_suffix(".json").write_text(json.dumps(info, indent=1))
            print(f"{data.name} fold {fold} {name} member {k}: {seconds / 60:.1f} min, "
                  f"{result.samples_per_second:,.0f} samples/s, test MAE {info['test_mae']:.4f}", flush=True)


def _forest(X: np.ndarray, y: np.ndarray, train_rows: np.ndarray, test_rows: np.ndarray) -> np.ndarray:
    """RF+Magpie (200 trees, max_features 0.25) fitted on ``train_rows`` of the Magpie matrix ``X``."""
    from sklearn.ensemble import RandomForestRegressor

    forest = RandomForestRegressor(n_estimators=200, max_features=0.25, random_state=0, n_jobs=2)
    forest.fit(X[train_rows], y[train_rows])
    return forest.predict(X[test_rows])


def summary(args: argparse.Namespace) -> dict:
    from matlake.featurestore.magpie import magpie_features

    data = load(args.task, args.symprec)
    magpie = magpie_features(data.inputs("roost"))  # once: every fold's forest reads its rows
    result: dict = {"task": args.task, "symprec": args.symprec, "unit": UNITS[args.task], "n_read": data.n_read,
                    "n_rows": len(data.y), "excluded": data.excluded, "folds": []}
    oof: dict[str, np.ndarray] = {}
    found = {p.name.split("_member_")[0] for p in _dir(args.task, args.symprec, 0).parent.glob("fold*/*_member_*.npz")}
    models = [m for m in MODELS if m in found] + sorted(found - set(MODELS))  # variants: MODEL+TAG
    # a model whose member predictions are absent here (trained before they were committed, on another machine)
    # keeps its per-fold figures from the previous summary (marked "carried_over") instead of vanishing from it
    previous_path = _dir(args.task, args.symprec, 0).parent / "summary.json"
    previous = json.loads(previous_path.read_text()) if previous_path.exists() else {"folds": []}
    carried = sorted({k for r in previous["folds"] for k, v in r.items() if isinstance(v, dict) and "ensemble_mae" in v}
                     - set(models))
    for fold, (train_rows, test_rows) in enumerate(data.folds):
        out = _dir(args.task, args.symprec, fold)
        y = data.y[test_rows]
        row: dict = {"fold": fold, "n_train": len(train_rows), "n_test": len(test_rows)}
        rf = _forest(magpie, data.y, train_rows, test_rows)
        row["rf_magpie_mae"] = float(np.mean(np.abs(rf - y)))
        row["rf_magpie_median_ae"] = float(np.median(np.abs(rf - y)))
        oof.setdefault("rf", np.full(len(data.y), np.nan))[test_rows] = rf
        for model in models:
            files = sorted(out.glob(f"{model}_member_*.npz"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
            if not files:
                continue
            loaded = [np.load(f) for f in files]
            if any(not np.array_equal(d["rows"], test_rows) for d in loaded):
                raise SystemExit(f"predictions in {out} are for other rows than fold {fold}'s test rows")
            means = np.stack([d["mean"] for d in loaded])
            infos = [json.loads(f.with_suffix(".json").read_text()) for f in files]
            ensemble = means.mean(axis=0)
            row[model] = {"members": len(files), "epochs": infos[0]["epochs"],
                          "single_mae": [float(np.mean(np.abs(m - y))) for m in means],
                          "ensemble_mae": float(np.mean(np.abs(ensemble - y))),
                          # the median shows whether a gap in MAE is broad or carried by a few large errors
                          "ensemble_median_ae": float(np.median(np.abs(ensemble - y))),
                          "minutes": [i["seconds"] / 60 for i in infos]}
            if args.task == "3dsc":
                tc = np.expm1(y)
                row[model]["ensemble_mae_kelvin"] = float(np.mean(np.abs(np.expm1(ensemble) - tc)))
            oof.setdefault(model, np.full(len(data.y), np.nan))[test_rows] = ensemble
        before = next((r for r in previous["folds"] if r.get("fold") == fold), {})
        for model in carried:
            if model in before:
                row[model] = {**before[model], "carried_over": True}
        if args.task == "3dsc":
            row["rf_magpie_mae_kelvin"] = float(np.mean(np.abs(np.expm1(rf) - np.expm1(y))))
        result["folds"].append(row)
    print(f"{args.task} (symprec {args.symprec}): {data.n_read} rows, {len(data.y)} with a valid protostructure "
          f"(excluded {data.excluded}); MAE in {UNITS[args.task]}")
    result["mean"] = {"rf_magpie": float(np.mean([r["rf_magpie_mae"] for r in result["folds"]])),
                      "rf_magpie_median_ae": float(np.mean([r["rf_magpie_median_ae"] for r in result["folds"]]))}
    forest = ", ".join(f"{r['rf_magpie_mae']:.4g}" for r in result["folds"])
    print(f"  {'RF+Magpie':>13}: folds {forest}; mean {result['mean']['rf_magpie']:.4g}; median absolute error, "
          f"mean over folds {result['mean']['rf_magpie_median_ae']:.4g}")
    for model in models + carried:
        rows = [r[model] for r in result["folds"] if model in r]
        if len(rows) != len(data.folds):
            if rows:
                print(f"  {model:>13}: {len(rows)} of {len(data.folds)} folds trained")
            continue
        ens = [r["ensemble_mae"] for r in rows]
        single = [np.mean(r["single_mae"]) for r in rows]
        result["mean"][model] = {"ensemble": float(np.mean(ens)), "single": float(np.mean(single)),
                                 "members": rows[0]["members"], "epochs": rows[0]["epochs"]}
        medians = [r["ensemble_median_ae"] for r in rows if "ensemble_median_ae" in r]
        median_note = ""
        if len(medians) == len(rows):
            result["mean"][model]["ensemble_median_ae"] = float(np.mean(medians))
            median_note = f"; median absolute error, mean over folds {np.mean(medians):.4g}"
        note = " (from the previous summary)" if model in carried else ""
        print(f"  {model:>13}: {rows[0]['members']} member(s) x {rows[0]['epochs']} epochs{note}; ensemble folds "
              f"{', '.join(f'{x:.4g}' for x in ens)}; mean {np.mean(ens):.4g} (single members {np.mean(single):.4g})"
              f"{median_note}")
        if args.task == "3dsc":
            print(f"  {'':>13}  MAE in Tc {rows[0]['ensemble_mae_kelvin']:.2f} K "
                  f"(RF+Magpie {result['folds'][0]['rf_magpie_mae_kelvin']:.2f} K)")
    if args.task in ("lifeo", "lifeo-random", "taata"):
        from pymatgen.core import Composition

        from matlake.modelling.metrics import pairwise_ranking_accuracy

        fold_of = np.zeros(len(data.y), dtype=int)
        for fold, (_, test_rows) in enumerate(data.folds):
            fold_of[test_rows] = fold
        # a pair is scored only when one model predicted both (always so with grouped folds)
        reduced = [(int(fold_of[i]), Composition(f).reduced_formula) for i, f in enumerate(data.formulas)]
        result["ranking"] = {}
        for model, pred in oof.items():
            if np.isnan(pred).any():
                continue
            r = pairwise_ranking_accuracy(reduced, data.y, pred, distinct=data.labels)
            result["ranking"][model] = r
            print(f"  polymorph ranking {model:>6}: {r['accuracy']:.3f} of {r['pairs']:.0f} same-composition pairs, "
                  f"{r['distinct_accuracy']:.3f} of {r['distinct_pairs']:.0f} with different protostructures")
        for model in carried:
            if model in previous.get("ranking", {}):
                result["ranking"][model] = {**previous["ranking"][model], "carried_over": True}
    out = _dir(args.task, args.symprec, 0).parent / "summary.json"
    out.write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--task", required=True, choices=list(UNITS))
    t.add_argument("--model", required=True, choices=MODELS)
    t.add_argument("--folds", default="0-4")
    t.add_argument("--members", default="0")
    t.add_argument("--epochs", type=int, default=150)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--symprec", type=float, default=0.1)
    t.add_argument("--hparams", default=None, help='architecture hyper-parameters as JSON, e.g. {"cry_heads": 3}')
    t.add_argument("--tag", default=None, help="name of a variant (with --hparams): results as MODEL+TAG")
    s = sub.add_parser("summary")
    s.add_argument("--task", required=True, choices=list(UNITS))
    s.add_argument("--symprec", type=float, default=0.1)
    args = parser.parse_args()
    train(args) if args.command == "train" else summary(args)


if __name__ == "__main__":
    main()
