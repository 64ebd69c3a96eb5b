"""Compositions per second: vectorised Magpie features vs matminer, in one run.

    python bench/bench_magpie.py [--n-matminer 2000] [--repeats 3]

matminer is timed on the first N compositions of the OQMD validation split
(its rate is flat in N); ours on all ~51k.  Both get pre-parsed compositions,
so formula parsing is excluded from both.
"""

from __future__ import annotations

import argparse
import csv
import time
import warnings
from pathlib import Path

import numpy as np
from matminer.featurizers.base import MultipleFeaturizer
from matminer.featurizers.composition import ElementProperty, IonProperty, Stoichiometry, ValenceOrbital
from pymatgen.core import Composition

from matlake.featurestore import magpie

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DATA = SHARED_DATA / "oqmd" / "crabnet_OQMD_Formation_Enthalpy_val.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-matminer", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not DATA.is_file():
        raise SystemExit(f"needs {DATA} (shared data directory absent)")

    with DATA.open(newline="") as f:
        comps = [Composition(row["formula"]) for row in csv.DictReader(f)]
    mappings = [{el.symbol: amt for el, amt in c.items()} for c in comps]

    t0 = time.perf_counter()
    magpie._tables()
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = magpie.magpie_features(mappings)
    first_s = time.perf_counter() - t0
    best_s = min(_timed(magpie.magpie_features, mappings) for _ in range(args.repeats))

    featurizer = MultipleFeaturizer(
        [
            Stoichiometry(),
            ElementProperty.from_preset("magpie"),
            ValenceOrbital(props=["frac"]),
            IonProperty(fast=True),
        ]
    )
    sample = comps[: args.n_matminer]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        ref = np.array([featurizer.featurize(c) for c in sample], dtype=np.float64)
        mm_s = time.perf_counter() - t0

    nz = ref != 0
    max_rel = float(np.max(np.abs(ours[: len(sample)][nz] - ref[nz]) / np.abs(ref[nz])))
    ours_rate, mm_rate = len(mappings) / best_s, len(sample) / mm_s
    print(f"table load (once):  {load_s * 1e3:8.1f} ms")
    print(f"ours, first call:   {len(mappings):6d} comps in {first_s:7.3f} s  "
          f"({len(mappings) / first_s:10.0f} comps/s)")
    print(f"ours, best of {args.repeats}:    {len(mappings):6d} comps in {best_s:7.3f} s  "
          f"({ours_rate:10.0f} comps/s, {best_s / len(mappings) * 1e6:6.2f} us/comp)")
    print(f"matminer:           {len(sample):6d} comps in {mm_s:7.3f} s  "
          f"({mm_rate:10.0f} comps/s, {mm_s / len(sample) * 1e6:6.0f} us/comp)")
    print(f"max relative diff on the {len(sample)} shared compositions: {max_rel:.2e}")
    print(f"speed-up: {ours_rate / mm_rate:.0f}x")


def _timed(fn, arg) -> float:
    t0 = time.perf_counter()
    fn(arg)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
