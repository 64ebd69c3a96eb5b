"""The cuprate pipeline on the shared data: families, Cu-O distances of the 9 MP cuprates, per-family calibrations.

    python bench/report_cuprates.py [--workdir DIR] [--fresh]

Ingests into a scratch DuckDB under ``--workdir`` (kept between runs: an unchanged file is accounted without being
re-read, so a second run only re-runs the pipeline): the 9 MP cuprate CIFs (``cif_structures``), the 3DSC archive of
10,904 MP CIFs (``3dsc_mp_structures``; Tc, lattice and space group joined from the table beside it) and that table
itself (``3dsc_mp_lattice``). Then :func:`matlake.modelling.cuprates.run_pipeline` and prints

- family counts (superconductor rows per dataset, structures, distinct MP ids),
- the in-plane and apical Cu-O distances of the 9 shared cuprates, with their lattice variables (a*, c) and the
  apical distance their family's calibration gives from the lattice alone,
- every family's calibration (n distinct points, alpha, beta, gamma, MAE, RMSE, k-fold CV MAE),
- the estimates feature set (rows per family, skip reasons) joined to ``superconductors_current`` in SQL,
- a check of the lattice convention: for 3DSC records with both a structure and a lattice row, the stacking axis
  and (a*, c) read from the lattice row alone against those read from the structure.

The reference structures are DFT (MP) relaxations, not the ICSD experimental structures of the thesis, and
3DSC matches many SuperCon compositions to few MP structures, so calibrations rest on few distinct points.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CUPRATES = SHARED_DATA / "cuprates"
ARCHIVE = SHARED_DATA / "supercon" / "3dsc_mp_cifs.tar.xz"
TABLE = SHARED_DATA / "supercon" / "3dsc_mp_lattice_tc_derived.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "matlake-report-cuprates")
    parser.add_argument("--fresh", action="store_true", help="delete the scratch database and features first")
    args = parser.parse_args()
    missing = [p for p in (CUPRATES, ARCHIVE, TABLE) if not p.exists()]
    if missing:
        raise SystemExit(f"needs {', '.join(map(str, missing))} (shared data directory absent)")
    warnings.simplefilter("ignore")
    if args.fresh and args.workdir.exists():
        shutil.rmtree(args.workdir)
    args.workdir.mkdir(parents=True, exist_ok=True)

    import sqlalchemy as sa

    from matlake import db
    from matlake.featurestore.store import FeatureStore
    from matlake.ingest import supercon
    from matlake.ingest.framework import ingest
    from matlake.modelling import cuprates

    engine = db.create_engine(f"duckdb:///{args.workdir / 'matlake.duckdb'}")
    db.upgrade(engine)
    store = FeatureStore(args.workdir / "features", engine)

    print("== ingest (scratch DuckDB in", args.workdir, ")")
    for paths in (sorted(CUPRATES.glob("*.cif")), [ARCHIVE], [TABLE]):
        t0 = time.perf_counter()
        for run in ingest(supercon, paths, engine=engine):
            print(f"  {run.dataset:20s} read {run.n_read:6d}  inserted {run.n_inserted:6d}  unchanged "
                  f"{run.n_unchanged:6d}  rejected {run.n_rejected:3d} {run.rejects_by_reason or ''}  "
                  f"({time.perf_counter() - t0:.1f} s)")

    t0 = time.perf_counter()
    summary = cuprates.run_pipeline(engine, store)
    print(f"\n== pipeline ({time.perf_counter() - t0:.1f} s)")
    for line in summary.lines():
        print("  " + line)

    with engine.connect() as conn:
        _family_counts(conn, sa)
        _shared_cuprates(conn, sa, cuprates, summary)
    _calibrations(summary)
    with engine.connect() as conn:
        _estimates(conn, sa, summary)
        _axis_check(conn, sa, cuprates)


def _family_counts(conn, sa) -> None:
    print("\n== cuprate families (studied families; 'other' and non-cuprates left out)")
    rows = conn.execute(sa.text(
        "SELECT cuprate_family, dataset, count(*) FROM superconductors_current WHERE cuprate_family <> 'other' "
        "GROUP BY 1, 2")).all()
    by_family: dict[str, Counter] = defaultdict(Counter)
    for family, dataset, n in rows:
        by_family[family][dataset] = n
    structures = conn.execute(sa.text(
        "SELECT st.id, st.calculation_id, r.extra, sc.cuprate_family FROM structure st "
        "JOIN material_revision r ON r.material_id = st.material_id AND r.dataset = st.dataset "
        "AND r.valid_to_run_id IS NULL LEFT JOIN superconductor sc ON sc.material_id = st.material_id "
        "AND sc.dataset = st.dataset AND sc.valid_to_run_id IS NULL WHERE st.valid_to_run_id IS NULL")).all()
    n_structures: Counter = Counter()
    mp_ids: dict[str, set] = defaultdict(set)
    for _, calc, extra, family in structures:
        extra = json.loads(extra) if isinstance(extra, str) else (extra or {})
        family = family or extra.get("cuprate_family")
        if family and family != "other":
            n_structures[family] += 1
            mp_ids[family].add(calc)
    geometry = dict(conn.execute(sa.text(
        "SELECT 'x', count(DISTINCT structure_id) FROM cuprate_geometry")).all())
    print(f"  {'family':10s} {'3dsc_mp_lattice':>15s} {'3dsc_mp_structures':>18s} {'structures':>10s} "
          f"{'MP ids':>6s}")
    for family in sorted(set(by_family) | set(n_structures)):
        c = by_family[family]
        print(f"  {family:10s} {c['3dsc_mp_lattice']:15d} {c['3dsc_mp_structures']:18d} {n_structures[family]:10d} "
              f"{len(mp_ids[family]):6d}")
    print(f"  structures with cuprate_geometry rows: {geometry.get('x', 0)}")


def _shared_cuprates(conn, sa, cuprates, summary) -> None:
    from matlake.featurestore.builders import structure_from_row

    print("\n== the 9 shared MP cuprates (cif_structures): Cu-O distances (A) of the CuO2-plane Cu sites")
    calibrations = {r.family: r.calibration for r in summary.calibrations if r.calibration is not None}
    rows = conn.execute(sa.text(
        "SELECT m.source_record_id, st.id, st.lattice, st.species, st.frac_coords, r.extra FROM structure st "
        "JOIN material m ON m.id = st.material_id JOIN material_revision r ON r.material_id = st.material_id "
        "AND r.dataset = st.dataset AND r.valid_to_run_id IS NULL "
        "WHERE st.valid_to_run_id IS NULL AND st.dataset = 'cif_structures' ORDER BY 1")).all()
    print(f"  {'record':32s} {'family':10s} {'sites':>5s} {'in-plane':>8s} {'apical':>7s} {'n_ap':>5s} {'a*':>6s} "
          f"{'c':>7s} {'axis':>4s} {'a*/2':>6s} {'apical from lattice':>19s}")
    for record_id, sid, lattice, species, coords, extra in rows:
        extra = json.loads(extra) if isinstance(extra, str) else (extra or {})
        family = extra.get("cuprate_family")
        sites = conn.execute(sa.text(
            "SELECT in_plane_cu_o_angstrom, apical_cu_o_angstrom, n_apical FROM cuprate_geometry "
            "WHERE structure_id = :s ORDER BY cu_site_index"), {"s": sid}).all()
        name = record_id.split(":", 1)[1]
        if not sites:
            print(f"  {name:32s} {family:10s}  no rows ({'not a studied family' if family == 'other' else 'none'})")
            continue
        in_plane = statistics.fmean(s[0] for s in sites)
        apicals = [s[1] for s in sites if s[1] is not None]
        apical = statistics.fmean(apicals) if apicals else None
        n_apical = "/".join(str(s[2]) for s in sites)
        try:
            axes = cuprates.axes_from_structure(structure_from_row(lattice, species, coords), family)
            lattice_text = f"{axes.a:6.3f} {axes.c:7.3f} {axes.axis:>4s} {axes.in_plane:6.3f}"
            cal = calibrations.get(family)
            estimate = f"{cal.predict(axes.a, axes.c):.3f} (v. {apical:.3f})" if cal and apical else "no calibration"
        except cuprates.LatticeUnusable as exc:
            lattice_text, estimate = f"{'':6s} {'':7s} {'':>4s} {'':6s}", f"lattice unusable: {exc.reason}"
        apical_text = f"{apical:7.3f}" if apical is not None else "   none"
        print(f"  {name:32s} {family:10s} {len(sites):5d} {in_plane:8.3f} {apical_text} {n_apical:>5s} "
              f"{lattice_text} {estimate:>19s}")


def _calibrations(summary) -> None:
    print("\n== calibrations: d_apical = alpha * c + beta * a* + gamma (Huber), residuals in A on the fitted points")
    print(f"  {'family':10s} {'ver':>3s} {'structs':>7s} {'n':>3s} {'alpha':>8s} {'beta':>8s} {'gamma':>8s} "
          f"{'MAE':>7s} {'RMSE':>7s} {'CV MAE':>7s}  status")
    for r in summary.calibrations:
        if r.calibration is None:
            print(f"  {r.family:10s} {'':3s} {r.n_structures:7d} {r.n_points:3d} skipped: {r.reason}")
            continue
        c = r.calibration
        cv = f"{r.cv_mae:7.4f}" if r.cv_mae is not None else "    n/a"
        print(f"  {r.family:10s} {r.version:3d} {r.n_structures:7d} {c.n:3d} {c.alpha:8.4f} {c.beta:8.4f} "
              f"{c.gamma:8.4f} {c.mae:7.4f} {c.rmse:7.4f} {cv}  {r.status}")


def _estimates(conn, sa, summary) -> None:
    info = summary.estimates
    print(f"\n== estimates: feature set {info.name} v{info.version}, {info.row_count} rows; "
          f"skipped {info.parameters.get('skipped')}")
    rows = conn.execute(sa.text(
        "SELECT e.family, s.dataset, count(*), median(e.in_plane_est), min(e.apical_est), median(e.apical_est), "
        "max(e.apical_est), median(s.tc_kelvin) FROM features_cuprate_distance_estimates e "
        "JOIN superconductors_current s USING (superconductor_id) GROUP BY 1, 2 ORDER BY 1, 2")).all()
    print(f"  {'family':10s} {'dataset':18s} {'rows':>5s} {'in-plane':>8s} {'apical min/median/max':>22s} "
          f"{'Tc median':>9s}")
    for family, dataset, n, in_plane, lo, mid, hi, tc in rows:
        print(f"  {family:10s} {dataset:18s} {n:5d} {in_plane:8.3f} {lo:7.3f}/{mid:6.3f}/{hi:6.3f} {tc:9.1f}")
    axes = conn.execute(sa.text(
        "SELECT stacking_axis, count(*) FROM features_cuprate_distance_estimates GROUP BY 1 ORDER BY 1")).all()
    print("  stacking axis of the lattice rows:", {a: n for a, n in axes})


def _axis_check(conn, sa, cuprates) -> None:
    from matlake.featurestore.builders import structure_from_row

    print("\n== lattice convention: lattice row alone vs structure (3dsc_mp_structures records with both)")
    rows = conn.execute(sa.text(
        "SELECT m.source_record_id, sc.lattice_a_angstrom, sc.lattice_b_angstrom, sc.lattice_c_angstrom, "
        "sc.spacegroup, sc.cuprate_family, st.lattice, st.species, st.frac_coords FROM superconductor sc "
        "JOIN structure st ON st.material_id = sc.material_id AND st.dataset = sc.dataset "
        "AND st.valid_to_run_id IS NULL JOIN material m ON m.id = sc.material_id "
        "WHERE sc.valid_to_run_id IS NULL AND sc.dataset = '3dsc_mp_structures' "
        "AND sc.cuprate_family IS NOT NULL AND sc.cuprate_family <> 'other' AND sc.lattice_a_angstrom IS NOT NULL "
        "ORDER BY 1")).all()
    outcome: Counter = Counter()
    labels: Counter = Counter()
    examples = []
    for record_id, a, b, c, sg, family, lattice, species, coords in rows:
        try:
            from_row = cuprates.axes_from_lattice(a, b, c, sg, family)
        except cuprates.LatticeUnusable as exc:
            from_row = exc.reason
        try:
            from_structure = cuprates.axes_from_structure(structure_from_row(lattice, species, coords), family)
        except cuprates.LatticeUnusable as exc:
            from_structure = exc.reason
        if isinstance(from_row, str) or isinstance(from_structure, str):
            outcome[f"left out: row {_what(from_row)}, structure {_what(from_structure)}"] += 1
            continue
        same = (abs(from_row.a - from_structure.a) < 0.01 * from_row.a
                and abs(from_row.c - from_structure.c) < 0.01 * from_row.c)
        outcome["both usable, a* and c within 1 %" if same else "both usable, a* or c differ by > 1 %"] += 1
        labels[(from_row.axis, from_structure.axis, from_row.c_multiple)] += 1
        if not same and len(examples) < 5:
            examples.append(f"{record_id}: row {sg} ({a}, {b}, {c}) -> {from_row}; structure -> {from_structure}")
    for what, n in outcome.most_common():
        print(f"  {n:5d}  {what}")
    for line in examples:
        print("    " + line)
    print("  (axis label of the row's lattice, of the structure's spglib cell, c multiple): count")
    for (row_axis, structure_axis, multiple), n in sorted(labels.items()):
        print(f"    ({row_axis}, {structure_axis}, {multiple}): {n}")


def _what(result) -> str:
    return result if isinstance(result, str) else "ok"


if __name__ == "__main__":
    main()
