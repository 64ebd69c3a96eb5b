"""The thesis' protostructure cleaning table (tables 6.1-6.3) for every structure source in ../shared/data.

    python bench/report_protostructure_cleaning.py [--db scratch.duckdb] [--reuse] [--workers 2]

1. Ingests, through the framework ``matlake ingest`` runs (``ingest.framework.ingest``), into a scratch DuckDB file:
   MP computed entries ``mp/emmet_Li-Fe-O_cses.json.gz`` (MP2020 energies and formation energies from the elemental
   references beside it), the MP task documents ``mp/emmet_*tasks*.json.gz`` (initial and relaxed structures), the
   3DSC MP CIFs ``supercon/3dsc_mp_cifs.tar.xz`` (parsed on the Dask workers), the TAATA POSCARs
   ``taata/raw_poscars/`` and matbench phonons ``mp/aviary_matbench_phonons.json.gz``.
2. Builds the ``protostructure`` feature set (moyopy, symprec 0.1) on a Dask LocalCluster (2 workers, one thread
   each) over every current structure.
3. Prints ``cleaning_report`` per source/dataset: Full -> valid Wyckoff representation -> lowest-energy canonical
   representation (where the source has energies: formation energy per atom when every structure of the set has one,
   else energy per atom, else total energy / sites; without energies the first structure of each canonical
   representation is kept, and the step says so) -> < 16 Wyckoff positions -> < 64 sites -> < 500 A^3 per site.
4. For the MP task documents: how often relaxation changed the Wyckoff representation (canonical label of the
   ``initial`` vs the ``relaxed`` structure of the same task), per task type.

Nothing of the shared data is copied: the scratch database and Parquet files go to a temporary folder unless ``--db``
names one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# (label, source, files relative to SHARED_DATA; a folder means its *.poscar files)
INPUTS = [
    ("MP entries (Li-Fe-O)", "mp", ["mp/emmet_Li-Fe-O_cses.json.gz"]),
    ("MP task documents", "mp", ["mp/emmet_tasks_Li_Fe_V.json.gz", "mp/emmet_test_As2SO6_tasks.json.gz",
                                 "mp/emmet_test_si_tasks.json.gz"]),
    ("3DSC MP CIFs", "supercon", ["supercon/3dsc_mp_cifs.tar.xz"]),
    ("TAATA POSCARs", "taata", ["taata/raw_poscars"]),
    ("matbench phonons", "mp", ["mp/aviary_matbench_phonons.json.gz"]),
]
# (source, dataset) -> label of the table
GROUPS = {("mp", "entries"): "MP entries (Li-Fe-O)", ("mp", "tasks"): "MP task documents",
          ("supercon", "3dsc_mp_structures"): "3DSC MP CIFs", ("taata", "poscars"): "TAATA POSCARs",
          ("mp", "matbench_phonons"): "matbench phonons"}
ENERGY_PREFERENCE = ("formation_energy_per_atom", "energy_per_atom", "uncorrected_energy")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _files(relative: list[str]) -> list[Path]:
    out = []
    for rel in relative:
        path = SHARED_DATA / rel
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.name.endswith(".poscar"))
        elif path.exists():
            out.append(path)
    return out


def ingest_all(engine, client) -> None:
    from matlake.ingest import cif, sources
    from matlake.ingest.framework import ingest

    for label, source, relative in INPUTS:
        files = _files(relative)
        if not files:
            print(f"  {label}: absent from {SHARED_DATA}, skipped")
            continue
        module = sources.get(source)
        start = time.perf_counter()
        with cif.use_dask(client):
            summaries = ingest(module, files, engine=engine)
        for s in summaries:
            rejects = f", rejects {s.rejects_by_reason}" if s.rejects_by_reason else ""
            print(f"  {label}: {s.source}/{s.dataset} read {s.n_read}, inserted {s.n_inserted}, "
                  f"rejected {s.n_rejected}{rejects}")
        print(f"    ({time.perf_counter() - start:.1f} s)")


def structure_rows(engine) -> dict[int, dict]:
    """structure_id -> source, dataset, kind, material, calculation, n_sites and its energies."""
    import sqlalchemy as sa

    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT structure_id, source, dataset, kind, material_id, calculation_id, n_sites FROM structures_current"
        )).mappings().all()
        energies = conn.execute(sa.text(
            "SELECT structure_id, property, value FROM property_value WHERE valid_to_run_id IS NULL "
            "AND structure_id IS NOT NULL AND property IN ('formation_energy_per_atom', 'energy_per_atom', "
            "'uncorrected_energy')"
        )).all()
        task_types = {}
        for mid, extra in conn.execute(sa.text(
                "SELECT material_id, extra FROM material_revision WHERE valid_to_run_id IS NULL AND dataset = 'tasks'"
        )).all():
            extra = json.loads(extra) if isinstance(extra, str) else (extra or {})
            for task_id, info in (extra.get("tasks") or {}).items():
                task_types[(mid, task_id)] = info.get("task_type") or "unknown"
    out = {r["structure_id"]: {**r, "energies": {}} for r in rows}
    for sid, prop, value in energies:
        if sid in out:
            out[sid]["energies"].setdefault(prop, value)
    for r in out.values():
        r["task_type"] = task_types.get((r["material_id"], r["calculation_id"]))
    return out


def _moved_tasks(engine) -> set[tuple[int, str]]:
    """(material, task) whose relaxed structure differs from its initial one (volume, or any coordinate > 1e-4)."""
    import numpy as np
    import sqlalchemy as sa

    with engine.connect() as conn:
        pairs = conn.execute(sa.text(
            "SELECT i.material_id, i.calculation_id, i.volume_a3, r.volume_a3, i.frac_coords, r.frac_coords "
            "FROM structure i JOIN structure r ON r.material_id = i.material_id AND r.dataset = i.dataset "
            "AND r.calculation_id = i.calculation_id AND r.kind = 'relaxed' AND r.valid_to_run_id IS NULL "
            "WHERE i.kind = 'initial' AND i.dataset = 'tasks' AND i.valid_to_run_id IS NULL")).all()
    moved = set()
    for mid, task, v0, v1, f0, f1 in pairs:
        a, b = (np.array(json.loads(f) if isinstance(f, str) else f) for f in (f0, f1))
        if abs(v0 - v1) > 1e-3 * v1 or a.shape != b.shape or np.abs((a - b + 0.5) % 1 - 0.5).max() > 1e-4:
            moved.add((mid, task))
    return moved


def per_atom(row: dict, prop: str) -> float:
    value = row["energies"].get(prop)
    if value is None:
        return float("nan")
    return value / row["n_sites"] if prop == "uncorrected_energy" else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=None, help="scratch DuckDB file (default: a temporary folder)")
    parser.add_argument("--reuse", action="store_true", help="the --db file is already ingested: skip ingestion")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    os.environ.setdefault("SPGLIB_WARNING", "OFF")
    if not SHARED_DATA.is_dir():
        raise SystemExit(f"needs {SHARED_DATA} (shared data directory absent)")

    scratch = Path(tempfile.mkdtemp(prefix="matlake-cleaning-"))
    try:
        report(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # without --db the database and features were scratch


def report(args: argparse.Namespace, scratch: Path) -> None:
    """Ingest (unless --reuse), build the features, print the tables."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from distributed import Client, LocalCluster

    from matlake import db
    from matlake.featurestore import protostructure as ps
    from matlake.featurestore.builders import build_feature_set
    from matlake.featurestore.store import FeatureStore

    db_path = args.db or scratch / "scratch.duckdb"
    engine = db.create_engine(f"duckdb:///{db_path}")
    db.upgrade(engine)
    print(f"{os.cpu_count()} CPUs; load average {_load()}; database {db_path}")
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        if not args.reuse:
            print("ingest:")
            ingest_all(engine, client)
        store = FeatureStore((args.db.parent if args.db else scratch) / "features", engine)
        start = time.perf_counter()
        info = build_feature_set("protostructure", engine=engine, store=store, scheduler=cluster.scheduler_address)
        print(f"protostructure features v{info.version}: {info.row_count} rows ({info.parameters['computed_rows']} "
              f"computed when it was built, on {args.workers} Dask workers); {time.perf_counter() - start:.1f} s; "
              f"load average {_load()}")
    table = store.read(info)
    rows = structure_rows(engine)
    ids = table.column("structure_id").to_pylist()

    groups: dict[str, list[int]] = defaultdict(list)
    for position, sid in enumerate(ids):
        r = rows[sid]
        label = GROUPS.get((r["source"], r["dataset"]), f"{r['source']}/{r['dataset']}")
        if r["dataset"] == "tasks":
            label += f" ({r['kind']})"
        groups[label].append(position)

    summary: dict[str, list[int]] = {}
    for label, positions in groups.items():
        sub = table.take(pa.array(positions))
        members = [rows[i] for i in sub.column("structure_id").to_pylist()]
        coverage = {p: sum(p in m["energies"] for m in members) for p in ENERGY_PREFERENCE}
        prop = max(ENERGY_PREFERENCE, key=lambda p: (coverage[p], -ENERGY_PREFERENCE.index(p)))
        prop = prop if coverage[prop] else None
        energies = None if prop is None else np.array([per_atom(m, prop) for m in members])
        report = ps.cleaning_report(sub, energies)
        errors = Counter(e.split(":")[1].strip().split(":")[0] for e in sub.column("error").to_pylist() if e)
        energy_note = "no energies"
        if prop:
            partial = " (the others rank last)" if coverage[prop] < len(members) else ""
            energy_note = (f"energies: {prop}{' / site' if prop == 'uncorrected_energy' else ''} for "
                           f"{coverage[prop]} of {len(members)}{partial}")
        print(f"\n{label}  ({energy_note}; errors: {dict(errors) or 'none'})")
        for step, count in report:
            print(f"  {step:75s} {count:8,d}")
        summary[label] = [count for _, count in report]

    print("\nsummary (columns: full, valid, canonical, <16 Wyckoff, <64 sites, <500 A^3/site)")
    for label, counts in summary.items():
        print(f"  {label:38s} " + " ".join(f"{c:7,d}" for c in counts))

    # relaxation: initial vs relaxed structure of the same task
    labels = dict(zip(ids, table.column("protostructure").to_pylist()))
    valid = dict(zip(ids, pc.and_(table.column("is_valid"), table.column("error").is_null()).to_pylist()))
    pairs: dict[tuple, dict[str, int]] = defaultdict(dict)
    for sid, r in rows.items():
        if r["dataset"] == "tasks" and sid in labels:
            pairs[(r["material_id"], r["calculation_id"])][r["kind"]] = sid
    counts: dict[str, Counter] = defaultdict(Counter)
    for (mid, task), kinds in pairs.items():
        if "initial" not in kinds or "relaxed" not in kinds:
            continue
        task_type = rows[kinds["relaxed"]]["task_type"] or "unknown"
        a, b = kinds["initial"], kinds["relaxed"]
        for key in (task_type, "all tasks"):
            counts[key]["tasks"] += 1
            if not (valid[a] and valid[b]):
                counts[key]["no valid label on one side"] += 1
            if ps.relaxation_changed_representation(labels[a] if valid[a] else None, labels[b] if valid[b] else None):
                counts[key]["changed"] += 1
    moved = _moved_tasks(engine)
    for (mid, task), kinds in pairs.items():
        if "initial" in kinds and "relaxed" in kinds and (mid, task) in moved:
            for key in (rows[kinds["relaxed"]]["task_type"] or "unknown", "all tasks"):
                counts[key]["moved"] += 1
    print("\nMP task documents: relaxation changed the representation (canonical label of initial vs relaxed)")
    for key in sorted(counts, key=lambda k: (k == "all tasks", k)):
        c = counts[key]
        print(f"  {key:24s} tasks {c['tasks']:4d}  cell or positions moved {c['moved']:4d}  representation changed "
              f"{c['changed']:4d}  unchanged {c['tasks'] - c['changed']:4d}  "
              f"(no valid label on one side: {c['no valid label on one side']})")
    print(f"\nload average at the end {_load()}")


if __name__ == "__main__":
    main()
