"""Structures per second: protostructure rows vs plain spglib and plain moyopy, side by side in one run.

    python bench/bench_protostructure.py [--repeats 5] [--3dsc 0] [--no-pymatgen]

Structures: the 288 AFLOW prototypes shipped with pymatgen, the CIFs in ../shared/data/cuprates/ if
present, and with ``--3dsc N`` the ordered structures among the first N CIFs of
../shared/data/supercon/3dsc_mp_cifs.tar.xz (Materials Project structures).  Parsing is excluded.

Timed, interleaved within each repeat (median reported):
- plain spglib ``get_symmetry_dataset(cell, symprec=0.1, angle_tolerance=5)`` on prebuilt cell tuples;
- plain moyopy ``MoyoDataset(cell, symprec=0.1)`` on prebuilt ``moyopy.Cell`` objects (no angle
  tolerance, as our moyopy rows);
- ``protostructure_row`` (moyopy, the default; and spglib) from pymatgen Structures, in-process;
- ``build_protostructure_table`` (moyopy) with the 10 s time limit (worker process, warm) and without
  (in-process): the difference is the cost of the time limit;
- pymatgen's own ``get_protostructure_label_from_moyopy`` / ``_from_spglib`` (skip: ``--no-pymatgen``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tarfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import moyopy
import numpy as np
import spglib
from pymatgen.core import Structure

from matlake.featurestore import protostructure as ps

os.environ.setdefault("SPGLIB_WARNING", "OFF")  # spglib's C code prints every failed step to stderr

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_structures(n_3dsc: int) -> dict[str, list[Structure]]:
    sets = {"aflow prototypes": [s for _, s in ps.load_aflow_prototypes()]}
    cuprates = sorted((SHARED_DATA / "cuprates").glob("*.cif"))
    if cuprates:
        sets["cuprate CIFs"] = [Structure.from_file(p) for p in cuprates]
    archive = SHARED_DATA / "supercon" / "3dsc_mp_cifs.tar.xz"
    if n_3dsc and archive.is_file():
        structures = []
        with tarfile.open(archive) as tar:
            for i, member in enumerate(m for m in tar if m.isfile() and m.name.endswith(".cif")):
                if i >= n_3dsc:
                    break
                try:
                    structure = Structure.from_str(tar.extractfile(member).read().decode(), fmt="cif")
                except Exception:  # noqa: BLE001 - a CIF pymatgen cannot read is not part of the benchmark
                    continue
                if structure.is_ordered:
                    structures.append(structure)
        sets[f"3DSC MP (ordered of first {n_3dsc})"] = structures
    return sets


def type_numbers(structure: Structure) -> list[int]:
    return [site.specie.Z for site in structure]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--3dsc", dest="n_3dsc", type=int, default=0, help="read the first N 3DSC CIFs too")
    parser.add_argument("--no-pymatgen", action="store_true", help="skip pymatgen's own label functions")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    sets = load_structures(args.n_3dsc)
    structures = [s for group in sets.values() for s in group]
    n = len(structures)
    print("structures: " + ", ".join(f"{name} {len(group)}" for name, group in sets.items()), f"= {n}")
    print(f"median sites {statistics.median(len(s) for s in structures):g}, max {max(len(s) for s in structures)}")

    spglib_cells = [(s.lattice.matrix, s.frac_coords, type_numbers(s)) for s in structures]
    moyo_cells = [moyopy.Cell(s.lattice.matrix.tolist(), s.frac_coords.tolist(), type_numbers(s)) for s in structures]
    items = list(enumerate(structures))

    methods: dict[str, Callable[[], object]] = {
        "plain spglib get_symmetry_dataset": lambda: [
            spglib.get_symmetry_dataset(c, symprec=0.1, angle_tolerance=5) for c in spglib_cells
        ],
        "plain moyopy MoyoDataset": lambda: [moyopy.MoyoDataset(c, symprec=0.1) for c in moyo_cells],
        "protostructure_row (moyopy)": lambda: [ps.protostructure_row(s) for s in structures],
        "protostructure_row (spglib)": lambda: [ps.protostructure_row(s, backend="spglib") for s in structures],
        "build_protostructure_table (moyopy, worker)": lambda: ps.build_protostructure_table(items),
        "build_protostructure_table (moyopy, no limit)": lambda: ps.build_protostructure_table(
            items, time_limit_s=None
        ),
    }
    if not args.no_pymatgen:
        start = time.perf_counter()
        from pymatgen.analysis import prototypes as pm

        print(f"import pymatgen.analysis.prototypes: {time.perf_counter() - start:.1f} s (not timed below)")
        methods["pymatgen get_protostructure_label_from_moyopy"] = lambda: [
            pm.get_protostructure_label_from_moyopy(s) for s in structures
        ]
        methods["pymatgen get_protostructure_label_from_spglib"] = lambda: [
            pm.get_protostructure_label_from_spglib(s) for s in structures
        ]

    ps.build_protostructure_table(items[:1])  # start the worker: its start-up is not per structure
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():  # interleaved, so load changes hit every method alike
            seconds[name].append(timed(fn))

    rate = {name: n / statistics.median(values) for name, values in seconds.items()}
    spglib_rate = rate["plain spglib get_symmetry_dataset"]
    moyopy_rate = rate["plain moyopy MoyoDataset"]
    print(f"\n{'method':48s} {'structures/s':>12s} {'ms each':>8s} {'vs spglib':>9s} {'vs moyopy':>9s}")
    for name, r in rate.items():
        print(f"{name:48s} {r:12,.0f} {1000 / r:8.3f} {r / spglib_rate:8.2f}x {r / moyopy_rate:8.2f}x")
    ours, theirs = rate["protostructure_row (moyopy)"], rate["protostructure_row (spglib)"]
    print(f"\nmoyopy backend / spglib backend (protostructure_row): {ours / theirs:.2f}x")

    rows = {backend: [ps.protostructure_row(s, backend=backend) for s in structures] for backend in ps.BACKENDS}
    both = [(m, s) for m, s in zip(rows["moyopy"], rows["spglib"]) if not m["error"] and not s["error"]]
    raw = sum(m["protostructure"] != s["protostructure"] for m, s in both)
    canonical = sum(m["canonical_protostructure"] != s["canonical_protostructure"] for m, s in both)
    print(
        f"labels moyopy vs spglib: {raw} of {len(both)} differ raw ({100 * raw / len(both):.1f} %), "
        f"{canonical} canonical ({100 * canonical / len(both):.1f} %)"
    )
    aflow = ps.load_aflow_prototypes()
    agreement = Counter(
        ps.compare_to_aflow_label(row["protostructure"], label)
        for (label, _), row in zip(aflow, rows["moyopy"][: len(aflow)])
    )
    print("288 AFLOW prototypes vs their AFLOW labels (moyopy):", dict(agreement.most_common()))
    elapsed = np.array([r["elapsed_s"] for r in ps.build_protostructure_table(items).to_pylist()])
    print(f"per-structure time in the worker: median {1000 * np.median(elapsed):.2f} ms, max {elapsed.max():.3f} s")


if __name__ == "__main__":
    main()
