"""The cuprate analysis of thesis ch. 3 over the database: Cu-O distances of reference structures, per-family lattice
calibrations of the apical distance, and distance estimates for SuperCon records that only have lattice parameters.

SuperCon gives Tc and at best lattice constants; structures (3DSC's MP matches, ICSD) give Cu-O distances but no
Tc. The steps below bridge the two and keep every result versioned so an analysis can name what it used:

1. :func:`compute_geometry`: ``cuprate_geometry`` rows (one per CuO2-plane Cu site) for the current structures of
   materials labelled with a cuprate family; incremental per code version.
2. :func:`fit_calibrations`: one ``cuprate_calibration`` row per family (a new ``version`` when the fit changed):
   Huber fit of d_apical = alpha * c + beta * a + gamma on the structures' lattices and mean apical distances.
3. :func:`estimate_distances`: the newest calibration of each family applied to superconductor rows with lattice
   constants, registered as the Parquet feature set ``cuprate_distance_estimates`` (DuckDB view
   ``features_cuprate_distance_estimates``), keyed by ``superconductor_id``.

Lattice convention, the same when fitting and when applying (thesis eq. 3.1 writes ``a*``):

- ``c`` is the conventional-cell length along the stacking axis (the CuO2-plane normal), whatever its label (in
  spglib's standard setting of Cmce La2CuO4 it is b, 3DSC's ``b_conv``), divided by the integer number of family
  cells it spans (:data:`FAMILY_CELL_C`): MP structures of ordered dopings, which 3DSC matches to SuperCon entries,
  are often 2x or 3x cells along the stack (La214 c = 39.5 A, RE124 c = 83.0 A), and such leverage points would
  decide the fit alone. A c that is no multiple of the family's cell (a YBa2Cu3O6 structure matched to a Y124
  formula) is left out, from the fit and from the estimates alike.
- ``a`` is a*, the edge of the primitive CuO2 square, ``2 * in_plane_from_lattice(l1, l2, system)`` of the two
  in-plane conventional lengths, so simple cells (a ~ 3.8 A, I4/mmm) and sqrt2 x sqrt2 cells (a ~ 5.4 A, Cmce,
  Fmmm) of one family share one scale instead of splitting the fit into two clusters. The two lengths must agree
  within :data:`SQUARE_TOLERANCE` (an in-plane 2 x 1 supercell, 7.7 x 3.9 A, would pass as a sqrt2 cell of a
  4.1 A square).
- A structure's stacking axis is the conventional lattice vector most parallel to its CuO2-plane normal
  (:func:`~matlake.featurestore.cuprate_geometry.cuo2_plane_normals`; the lattice's ``stacking_axis`` only where no
  corner-sharing CuO4 square is found). A lattice-only row has lengths and
  a space group but no orientation: its stacking axis is c for tetragonal cells, otherwise the longest axis whose two
  complementary lengths form the CuO2 square. ``bench/report_cuprates.py`` checks that both rules give the same
  (a*, c) on the 3DSC records that have both a structure and a lattice row.
- Reference points are de-duplicated by (a*, c, d_apical) rounded to 1e-4 A within a family: 3DSC matches many
  SuperCon compositions (dopings) to one MP structure, and the copies would weight a structure by its number of
  matches and leak between cross-validation folds. ``n_structures`` of a calibration counts distinct points.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from matlake import db
from matlake.featurestore.builders import structure_from_row
from matlake.featurestore.cuprate_geometry import cu_o_distances, cuo2_plane_normals, stacking_axis
from matlake.featurestore.store import FeatureSetInfo, FeatureStore, write_part
from matlake.ingest.cuprate_families import OTHER
from matlake.modelling.cuprate_calibration import (
    MIN_POINTS,
    Calibration,
    crystal_system,
    fit_family_calibration,
    in_plane_from_lattice,
)
from matlake.schema.columns import utcnow
from matlake.version import code_version

__all__ = [
    "FAMILY_CELL_C", "FEATURE_SET", "FamilyCalibration", "GeometryRun", "LatticeAxes", "LatticeUnusable",
    "PipelineSummary",
    "axes_from_lattice", "axes_from_structure", "compute_geometry", "cross_validated_mae", "estimate_distances",
    "family_cell", "fit_calibrations", "geometry_run", "run_pipeline",
]

log = logging.getLogger(__name__)

FEATURE_SET = "cuprate_distance_estimates"
SYMPREC = 0.1
"""spglib tolerance (A) for a structure's conventional cell; MP's own setting, loose enough for relaxed cells."""
ANGLE_TOLERANCE = 5.0
SQUARE_TOLERANCE = 0.10
"""Largest relative difference of the two in-plane lengths of a CuO2 square cell (Y123: 1.8 %, Cmce La2CuO4: 3.4 %,
MP's relaxed Cccm Bi2201: 7.4 %); an in-plane 2 x 1 supercell differs by 100 %."""
DEDUP_DECIMALS = 4
CV_FOLDS = 10
CV_SEED = 0
CHUNK = 500
_LATTICE_SYSTEMS = ("tetragonal", "orthorhombic")


# ---- lattice convention (pure) -----------------------------------------------------------------------------------

FAMILY_CELL_C: dict[str, float] = {
    "La214 (T)": 13.2, "Y123": 11.7, "RE123": 11.7, "Y124": 27.2, "RE124": 27.2,
    "Tl1201": 9.3, "Tl1212": 12.6, "Tl1223": 15.9, "Tl2201": 23.2, "Tl2212": 29.3,
    "Hg1201": 9.5, "Hg1212": 12.7, "Hg1223": 15.8, "Hg2212": 28.9, "Bi2201": 24.6, "Bi2212": 30.8,
}  # fmt: skip
"""Approximate c (A) of each family's standard conventional cell (body-centred for La214, Y124, Tl22xx, Bi22xx,
Hg2212; primitive otherwise). Used only to find the integer supercell multiple of a cell's c."""
CELL_C_TOLERANCE = 0.20
"""A c that is no integer multiple of its family's cell within this fraction belongs to another phase or a
mislabelled structure (e.g. a YBa2Cu3O6 cell matched to a Y124 formula) and is left out."""


class LatticeUnusable(ValueError):
    """A cell from which no (a*, c) pair can be read; ``reason`` is a snake_case code for counting."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class LatticeAxes:
    """The calibration's lattice variables of one cell (A)."""

    a: float  # a*: edge of the primitive CuO2 square
    c: float  # length along the stacking axis, divided by c_multiple
    axis: str  # which conventional axis ('a', 'b' or 'c') is the stacking axis
    system: str  # crystal system the in-plane estimate was made for
    c_multiple: int = 1  # the cell's stacking length is c_multiple family cells (DFT supercells: 2, 3)

    @property
    def in_plane(self) -> float:
        """The in-plane Cu-O estimate: half the square edge."""
        return self.a / 2


def axes_from_lattice(a: float, b: float | None, c: float, spacegroup: str | int | None,
                      family: str | None = None) -> LatticeAxes:
    """(a*, c) of a lattice-only row; ``b`` None means a tetragonal cell (b = a), ``spacegroup`` None: unknown.

    Tetragonal cells stack along c (the 4-fold axis in every setting); otherwise the longest axis whose two
    complementary lengths form the CuO2 square is the stacking axis. With ``family``, c is reduced to the family's
    cell (:func:`family_cell`). Raises :class:`LatticeUnusable`.
    """
    lengths = {"a": a, "b": a if b is None else b, "c": c}
    for name, value in lengths.items():
        if value is None or not math.isfinite(value) or value <= 0:
            raise LatticeUnusable("invalid_lattice", f"lattice {name} = {value!r} is not a positive length")
    system: str | None = None
    if spacegroup is not None and str(spacegroup).strip():
        try:
            system = crystal_system(spacegroup)
        except ValueError:
            system = None  # an unreadable symbol says nothing: let the lengths decide
    if system is not None and system not in _LATTICE_SYSTEMS:
        raise LatticeUnusable("not_tetragonal_or_orthorhombic",
                              f"space group {spacegroup} is {system}: no single edge spans the CuO2 square")
    candidates = ("c",) if system == "tetragonal" else ("a", "b", "c")
    found: list[LatticeAxes] = []
    for axis in candidates:
        try:
            edge = _square_edge(*(lengths[k] for k in "abc" if k != axis), system or "orthorhombic")
        except LatticeUnusable:
            continue
        found.append(LatticeAxes(edge, lengths[axis], axis, system or "orthorhombic"))
    if not found:
        raise LatticeUnusable("no_cuo2_square", f"no pair of the lengths {a}, {b}, {c} forms a CuO2 square")
    axes = max(found, key=lambda found_axes: found_axes.c)
    return axes if family is None else family_cell(axes, family)


def axes_from_structure(structure: Any, family: str | None = None) -> LatticeAxes:
    """(a*, c) of a structure's conventional cell, the stacking axis being the lattice direction closest to its
    CuO2-plane normal; with
    ``family``, c is reduced to the family's cell (:func:`family_cell`). Raises :class:`LatticeUnusable`."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = SpacegroupAnalyzer(structure, symprec=SYMPREC,
                                         angle_tolerance=ANGLE_TOLERANCE).get_symmetry_dataset()
    except Exception as exc:  # spglib gives up on some disordered or broken cells
        raise LatticeUnusable("symmetry_failed", f"spglib found no symmetry: {exc}") from None
    if dataset is None:
        raise LatticeUnusable("symmetry_failed", "spglib found no symmetry")
    number = int(_field(dataset, "number"))
    system = crystal_system(number)
    if system not in _LATTICE_SYSTEMS:
        raise LatticeUnusable("not_tetragonal_or_orthorhombic",
                              f"space group {number} is {system}: no single edge spans the CuO2 square")
    # (a_s b_s c_s) = (a b c) P^-1 in spglib's column convention; rows here, in the input's Cartesian frame
    conventional = np.linalg.inv(np.asarray(_field(dataset, "transformation_matrix"), float)).T @ \
        structure.lattice.matrix
    lengths = np.linalg.norm(conventional, axis=1)
    normal = _plane_normal(structure)
    k = int(np.argmax(np.abs(conventional @ normal) / lengths))
    edge = _square_edge(*(float(lengths[i]) for i in range(3) if i != k), system)
    axes = LatticeAxes(edge, float(lengths[k]), "abc"[k], system)
    return axes if family is None else family_cell(axes, family)


def _plane_normal(structure: Any) -> np.ndarray:
    """The CuO2-plane normal from the Cu-O squares (right for infinite-layer cells whose c is shorter than a);
    the normal of the most widely spaced lattice planes only when no corner-sharing square is found."""
    normals = [normal for _, normal in cuo2_plane_normals(structure).values()]
    return normals[0] if normals else stacking_axis(structure.lattice)


def family_cell(axes: LatticeAxes, family: str) -> LatticeAxes:
    """``axes`` with c divided by the integer multiple of the family's cell it spans (MP/3DSC structures of ordered
    dopings are often 2x or 3x cells along the stacking axis); a c far from every multiple raises
    :class:`LatticeUnusable` (``c_not_family_cell``). Families without a known cell pass unchanged."""
    nominal = FAMILY_CELL_C.get(family)
    if nominal is None:
        return axes
    multiple = max(1, round(axes.c / nominal))
    if abs(axes.c / multiple - nominal) > CELL_C_TOLERANCE * nominal:
        raise LatticeUnusable("c_not_family_cell", f"c = {axes.c:.3f} A is no multiple of the {family} cell "
                              f"(~{nominal} A)")
    return replace(axes, c=axes.c / multiple, c_multiple=multiple)


def _square_edge(l1: float, l2: float, system: str | int) -> float:
    """a* from the two in-plane lengths: they must be equal within SQUARE_TOLERANCE (an in-plane 2 x 1 supercell
    would otherwise pass as a sqrt2 cell of a 4.1 A square) and give a Cu-O bond in range."""
    if abs(l1 - l2) > SQUARE_TOLERANCE * (l1 + l2) / 2:
        raise LatticeUnusable("no_cuo2_square", f"in-plane lengths {l1:.3f} and {l2:.3f} A differ by more than "
                              f"{SQUARE_TOLERANCE:.0%}")
    try:
        return 2 * in_plane_from_lattice(l1, l2, system)
    except ValueError as exc:
        raise LatticeUnusable("no_cuo2_square", str(exc)) from None


def _field(dataset: Any, name: str) -> Any:
    """spglib >= 2.5 returns an object, older versions a dict."""
    return dataset[name] if isinstance(dataset, dict) else getattr(dataset, name)


def cross_validated_mae(family: str, a: Sequence[float], c: Sequence[float], d_apical: Sequence[float], *,
                        folds: int = CV_FOLDS, seed: int = CV_SEED) -> float | None:
    """Mean absolute error (A) of k-fold predictions (leave-one-out when n <= folds); None when a training fold
    has fewer than the 3 points a fit needs or cannot resolve alpha and beta."""
    a, c, d = (np.asarray(x, dtype=float) for x in (a, c, d_apical))
    n = len(d)
    k = min(n, folds)
    if k < 2 or n - math.ceil(n / k) < MIN_POINTS:
        return None
    order = np.random.default_rng(seed).permutation(n)
    errors = np.empty(n)
    for test in np.array_split(order, k):
        train = np.setdiff1d(order, test)
        try:
            calibration = fit_family_calibration(family, a[train], c[train], d[train])
        except ValueError:
            return None
        errors[test] = np.abs(np.asarray(calibration.predict(a[test], c[test])) - d[test])
    return float(errors.mean())


# ---- database helpers --------------------------------------------------------------------------------------------


def _snapshot(conn: sa.Connection) -> int:
    return int(conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM ingest_run")).scalar())


def _source_filter(source: str | None) -> tuple[str, dict[str, Any]]:
    return ("AND s.name = :source", {"source": source}) if source else ("", {})


def _families(conn: sa.Connection, source: str | None) -> dict[tuple[int, str], str]:
    """(material_id, dataset) -> cuprate family other than ``other``: the current superconductor row's, else the
    one the record's ``extra`` gives (structures without a Tc row, ICSD records)."""
    where, params = _source_filter(source)
    found: dict[tuple[int, str], str] = {}
    for material_id, dataset, extra in db.fetch_pairs(conn, (
        "SELECT r.material_id, r.dataset, CAST(r.extra AS TEXT) FROM material_revision r "
        "JOIN material m ON m.id = r.material_id JOIN source s ON s.id = m.source_id "
        f"WHERE r.valid_to_run_id IS NULL AND r.status = 'active' AND CAST(r.extra AS TEXT) LIKE :pattern {where}"
    ), {**params, "pattern": "%cuprate_family%"}):
        family = (json.loads(extra) or {}).get("cuprate_family") if extra else None
        if family and family != OTHER:
            found[(int(material_id), dataset)] = family
    for material_id, dataset, family in db.fetch_pairs(conn, (
        "SELECT sc.material_id, sc.dataset, sc.cuprate_family FROM superconductor sc "
        "JOIN material m ON m.id = sc.material_id JOIN source s ON s.id = m.source_id "
        f"WHERE sc.valid_to_run_id IS NULL AND sc.cuprate_family IS NOT NULL {where}"
    ), params):
        if family != OTHER:
            found[(int(material_id), dataset)] = family
        else:
            found.pop((int(material_id), dataset), None)
    return found


def _cuprate_structures(conn: sa.Connection, source: str | None) -> dict[int, str]:
    """Current structure id -> family, for structures of materials labelled with a cuprate family."""
    families = _families(conn, source)
    where, params = _source_filter(source)
    rows = db.fetch_pairs(conn, (
        "SELECT st.id, st.material_id, st.dataset FROM structure st JOIN material m ON m.id = st.material_id "
        f"JOIN source s ON s.id = m.source_id WHERE st.valid_to_run_id IS NULL {where} ORDER BY st.id"
    ), params)
    return {int(sid): families[(int(mid), ds)] for sid, mid, ds in rows if (int(mid), ds) in families}


def _structure_json(conn: sa.Connection, ids: Sequence[int]) -> Iterator[tuple[int, Any, Any, Any]]:
    for start in range(0, len(ids), CHUNK):
        listing = ", ".join(str(int(i)) for i in ids[start:start + CHUNK])
        yield from db.fetch_pairs(conn, (
            "SELECT id, CAST(lattice AS TEXT), CAST(species AS TEXT), CAST(frac_coords AS TEXT) FROM structure "
            f"WHERE id IN ({listing}) ORDER BY id"))


# ---- 1. geometry -------------------------------------------------------------------------------------------------


@dataclass
class GeometryRun:
    """What :func:`compute_geometry` did."""

    code_version: str
    snapshot_run_id: int
    n_structures: int = 0  # current structures with a cuprate family
    n_up_to_date: int = 0  # skipped: rows for this code version exist
    n_computed: int = 0  # structures that got rows now
    n_rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> structures without rows


_GEOMETRY_COLUMNS = {
    "structure_id": pa.int64(), "cu_site_index": pa.int64(), "in_plane_cu_o_angstrom": pa.float64(),
    "apical_cu_o_angstrom": pa.float64(), "n_apical": pa.int64(), "snapshot_run_id": pa.int64(),
    "code_version": pa.string(), "created_at": pa.timestamp("us"),
}


def compute_geometry(engine: sa.Engine, *, source: str | None = "supercon") -> int:
    """Write ``cuprate_geometry`` rows for the current cuprate structures of ``source`` (None: every source) that
    have none for this code version; returns the number of rows written."""
    return geometry_run(engine, source=source).n_rows


def geometry_run(engine: sa.Engine, *, source: str | None = "supercon") -> GeometryRun:
    """:func:`compute_geometry` with its counts: structures up to date, computed, and skipped with reasons.

    Structures with no CuO2-plane Cu site get no row, so they are examined again on the next run.
    """
    version = code_version()
    with db.connect(engine) as conn:
        db.check_schema(conn)
        run = GeometryRun(version, _snapshot(conn))
        structures = _cuprate_structures(conn, source)
        done = {int(r[0]) for r in db.fetch_pairs(
            conn, "SELECT DISTINCT structure_id FROM cuprate_geometry WHERE code_version = :cv", {"cv": version})}
    run.n_structures = len(structures)
    pending = [sid for sid in structures if sid not in done]
    run.n_up_to_date = run.n_structures - len(pending)
    skipped: Counter[str] = Counter()
    for start in range(0, len(pending), CHUNK):
        chunk = pending[start:start + CHUNK]
        with db.connect(engine) as conn:
            rows: list[dict[str, Any]] = []
            for sid, lattice, species, coords in _structure_json(conn, chunk):
                site_rows, reason = _site_rows(int(sid), lattice, species, coords)
                if reason:
                    skipped[reason] += 1
                    continue
                run.n_computed += 1
                rows.extend(site_rows)
            now = utcnow()
            for row in rows:
                row.update(snapshot_run_id=run.snapshot_run_id, code_version=version, created_at=now)
            db.bulk_insert(conn, "cuprate_geometry", _arrow(rows, _GEOMETRY_COLUMNS))
        run.n_rows += len(rows)
    run.skipped = dict(skipped)
    if skipped:
        log.info("cuprate geometry: %d structures without rows: %s", sum(skipped.values()), dict(skipped))
    return run


def _site_rows(structure_id: int, lattice: Any, species: Any, coords: Any) -> tuple[list[dict[str, Any]], str | None]:
    try:
        structure = structure_from_row(lattice, species, coords)
    except Exception as exc:  # a stored row pymatgen cannot rebuild: counted, never fatal
        log.warning("structure %d cannot be rebuilt: %s", structure_id, exc)
        return [], "unreadable_structure"
    try:
        sites = cu_o_distances(structure)
    except Exception as exc:
        log.warning("structure %d: Cu-O distances failed: %s", structure_id, exc)
        return [], "geometry_failed"
    if not sites:
        return [], "no_cuo2_plane_cu"
    return [{"structure_id": structure_id, "cu_site_index": g.site_index, "in_plane_cu_o_angstrom": g.in_plane,
             "apical_cu_o_angstrom": g.apical, "n_apical": len(g.apical_bonds)} for g in sites], None


# ---- 2. calibrations ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FamilyCalibration:
    """The outcome for one family: ``status`` is created, unchanged (same fit as the newest stored version) or
    skipped (``reason`` says why)."""

    family: str
    status: str
    n_structures: int  # current structures with an apical distance and a usable lattice
    n_points: int  # distinct (a*, c, d_apical) points fitted (stored as n_structures)
    calibration: Calibration | None = None
    cv_mae: float | None = None
    calibration_id: int | None = None
    version: int | None = None
    reason: str | None = None


@dataclass
class _Point:
    structure_id: int
    a: float
    c: float
    apical: float


def fit_calibrations(engine: sa.Engine, *, source: str | None = None, force: bool = False) -> list[FamilyCalibration]:
    """Fit eq. 3.1 per family on the current structures' geometry rows (of ``source``; None: all) and store a new
    version per family whose fit differs from its newest stored one (``force``: always). Families with fewer than
    3 distinct points, or whose a and c cannot be told apart, are skipped and logged."""
    version = code_version()
    with db.connect(engine) as conn:
        db.check_schema(conn)
        snapshot = _snapshot(conn)
        families = _cuprate_structures(conn, source)
        apical = _mean_apical(conn, set(families))
        points: dict[str, list[_Point]] = defaultdict(list)
        unusable: dict[str, Counter[str]] = defaultdict(Counter)
        for sid, lattice, species, coords in _structure_json(conn, sorted(apical)):
            family = families[int(sid)]
            try:
                axes = axes_from_structure(structure_from_row(lattice, species, coords), family)
            except LatticeUnusable as exc:
                unusable[family][exc.reason] += 1
                continue
            points[family].append(_Point(int(sid), axes.a, axes.c, apical[int(sid)]))
        newest = _newest_calibrations(conn)
    results = []
    for family in sorted(set(points) | set(unusable)):
        result = _fit_one(family, points.get(family, []), unusable.get(family, Counter()))
        if result.status == "skipped":
            log.info("cuprate calibration of %s skipped: %s", family, result.reason)
        results.append(result)
    stored = []
    with db.connect(engine) as conn:
        for result in results:
            if result.calibration is None:
                stored.append(result)
                continue
            previous = newest.get(result.family)
            if previous is not None and not force and _same_fit(previous, result, version):
                stored.append(replace(result, status="unchanged", calibration_id=previous["id"],
                                       version=previous["version"]))
                continue
            next_version = (previous["version"] if previous else 0) + 1
            cal = result.calibration
            new_id = conn.execute(sa.text(
                "INSERT INTO cuprate_calibration (family, version, alpha, beta, gamma, n_structures, mae_angstrom, "
                "rmse_angstrom, snapshot_run_id, code_version, created_at) VALUES (:f, :v, :al, :be, :ga, :n, :mae, "
                ":rmse, :snap, :cv, :now) RETURNING id"
            ), {"f": result.family, "v": next_version, "al": cal.alpha, "be": cal.beta, "ga": cal.gamma,
                "n": cal.n, "mae": cal.mae, "rmse": cal.rmse, "snap": snapshot, "cv": version, "now": utcnow()}
            ).scalar()
            stored.append(replace(result, status="created", calibration_id=int(new_id), version=next_version))
    return stored


def _mean_apical(conn: sa.Connection, structure_ids: set[int]) -> dict[int, float]:
    """Structure id -> mean apical distance over its CuO2-plane sites, from its newest code version's rows."""
    rows = db.fetch_pairs(conn, (
        "SELECT g.structure_id, g.id, g.code_version, g.apical_cu_o_angstrom FROM cuprate_geometry g "
        "JOIN structure st ON st.id = g.structure_id WHERE st.valid_to_run_id IS NULL ORDER BY g.id"))
    newest: dict[int, str] = {}
    values: dict[tuple[int, str], list[float]] = defaultdict(list)
    for sid, _, cv, apical in rows:
        sid = int(sid)
        if sid not in structure_ids:
            continue
        newest[sid] = cv  # ordered by id: the last one wins
        if apical is not None and not (isinstance(apical, float) and math.isnan(apical)):
            values[(sid, cv)].append(float(apical))
    return {sid: float(np.mean(values[(sid, cv)])) for sid, cv in newest.items() if values.get((sid, cv))}


def _fit_one(family: str, points: list[_Point], unusable: Counter[str]) -> FamilyCalibration:
    why_fewer = f" ({', '.join(f'{n} {r}' for r, n in sorted(unusable.items()))} left out)" if unusable else ""
    distinct = sorted({(round(p.a, DEDUP_DECIMALS), round(p.c, DEDUP_DECIMALS), round(p.apical, DEDUP_DECIMALS))
                       for p in points})
    if len(distinct) < MIN_POINTS:
        return FamilyCalibration(family, "skipped", len(points), len(distinct), reason=(
            f"{len(distinct)} distinct reference point(s) from {len(points)} structure(s){why_fewer}; "
            f"a fit needs {MIN_POINTS}"))
    a, c, d = (np.array(col) for col in zip(*distinct))
    try:
        calibration = fit_family_calibration(family, a, c, d)
    except ValueError as exc:
        return FamilyCalibration(family, "skipped", len(points), len(distinct), reason=str(exc) + why_fewer)
    return FamilyCalibration(family, "fitted", len(points), len(distinct), calibration,
                             cross_validated_mae(family, a, c, d))


def _newest_calibrations(conn: sa.Connection) -> dict[str, dict[str, Any]]:
    rows = conn.execute(sa.text(
        "SELECT c.id, c.family, c.version, c.alpha, c.beta, c.gamma, c.n_structures, c.mae_angstrom, "
        "c.rmse_angstrom, c.code_version FROM cuprate_calibration c WHERE c.version = "
        "(SELECT max(c2.version) FROM cuprate_calibration c2 WHERE c2.family = c.family)")).mappings().all()
    return {r["family"]: dict(r) for r in rows}


def _same_fit(previous: dict[str, Any], result: FamilyCalibration, version: str) -> bool:
    cal = result.calibration
    return (previous["code_version"] == version and previous["n_structures"] == cal.n
            and all(math.isclose(previous[k], getattr(cal, k), rel_tol=1e-9, abs_tol=1e-12)
                    for k in ("alpha", "beta", "gamma")))


# ---- 3. estimates ------------------------------------------------------------------------------------------------

_ESTIMATE_COLUMNS = {
    "superconductor_id": pa.int64(), "material_id": pa.int64(), "family": pa.string(),
    "calibration_id": pa.int64(), "calibration_version": pa.int64(), "a": pa.float64(), "c": pa.float64(),
    "stacking_axis": pa.string(), "c_multiple": pa.int64(), "in_plane_est": pa.float64(), "apical_est": pa.float64(),
}


def estimate_distances(engine: sa.Engine, store: FeatureStore) -> FeatureSetInfo:
    """Apply each family's newest calibration to the current superconductor rows with lattice a and c, and register
    the estimates as a new version of ``cuprate_distance_estimates`` (the newest version when nothing changed).

    Columns: superconductor_id (key), material_id, family, calibration_id, calibration_version, a (= a*, A),
    c (stacking-axis length per family cell, A), stacking_axis (the lattice column c came from), c_multiple (family
    cells in that length), in_plane_est, apical_est (A).
    Rows that cannot be estimated are counted by reason in the version's ``parameters["skipped"]``.
    """
    with db.connect(engine) as conn:
        db.check_schema(conn)
        snapshot = _snapshot(conn)
        calibrations = _newest_calibrations(conn)
        rows = conn.execute(sa.text(
            "SELECT superconductor_id, material_id, lattice_a_angstrom, lattice_b_angstrom, lattice_c_angstrom, "
            "spacegroup, cuprate_family, valid_from_run_id FROM superconductors_current "
            "WHERE lattice_a_angstrom IS NOT NULL AND lattice_c_angstrom IS NOT NULL "
            "AND cuprate_family IS NOT NULL AND cuprate_family <> :other ORDER BY superconductor_id"
        ), {"other": OTHER}).all()
    out: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for r in rows:
        cal = calibrations.get(r.cuprate_family)
        if cal is None:
            skipped["no_calibration"] += 1
            continue
        try:
            axes = axes_from_lattice(r.lattice_a_angstrom, r.lattice_b_angstrom, r.lattice_c_angstrom, r.spacegroup,
                                     r.cuprate_family)
        except LatticeUnusable as exc:
            skipped[exc.reason] += 1
            continue
        out.append({
            "superconductor_id": r.superconductor_id, "material_id": r.material_id, "family": r.cuprate_family,
            "calibration_id": cal["id"], "calibration_version": cal["version"], "a": axes.a, "c": axes.c,
            "stacking_axis": axes.axis, "c_multiple": axes.c_multiple, "in_plane_est": axes.in_plane,
            "apical_est": cal["alpha"] * axes.c + cal["beta"] * axes.a + cal["gamma"],
        })
    table = _arrow(out, _ESTIMATE_COLUMNS)
    digest = _digest(table)
    latest = store.latest(FEATURE_SET)
    if latest is not None and latest.parameters.get("digest") == digest:
        return latest
    parameters = {
        "digest": digest, "skipped": dict(sorted(skipped.items())), "n_candidates": len(rows),
        "calibrations": {f: {"id": c["id"], "version": c["version"]} for f, c in sorted(calibrations.items())},
        "a": "a*: primitive CuO2-square edge, 2 x in_plane_from_lattice of the two in-plane lengths",
        "c": "length along the stacking axis (tetragonal: c; else the longest axis over a CuO2 square) per family cell",
        "square_tolerance": SQUARE_TOLERANCE, "family_cell_c": FAMILY_CELL_C, "cell_c_tolerance": CELL_C_TOLERANCE,
    }
    part = write_part(store.staging_dir(), table)
    return store.register(FEATURE_SET, [part], parameters=parameters, snapshot_run_id=snapshot,
                          input_runs=[int(r.valid_from_run_id) for r in rows])


def _digest(table: pa.Table) -> str:
    digest = hashlib.sha256()
    for name in table.column_names:
        digest.update(name.encode())
        digest.update(json.dumps(table.column(name).to_pylist()).encode())
    return digest.hexdigest()


def _arrow(rows: list[dict[str, Any]], columns: dict[str, pa.DataType]) -> pa.Table:
    return pa.table({name: pa.array([r.get(name) for r in rows], type_) for name, type_ in columns.items()})


# ---- 1-3 ---------------------------------------------------------------------------------------------------------


@dataclass
class PipelineSummary:
    """What :func:`run_pipeline` did, printable line by line."""

    geometry: GeometryRun
    calibrations: list[FamilyCalibration]
    estimates: FeatureSetInfo

    def lines(self) -> list[str]:
        g = self.geometry
        out = [f"geometry: {g.n_structures} cuprate structures, {g.n_up_to_date} up to date, {g.n_computed} computed "
               f"({g.n_rows} Cu-site rows)" + (f", without CuO2-plane Cu: {g.skipped}" if g.skipped else "")]
        for r in self.calibrations:
            if r.calibration is None:
                out.append(f"calibration {r.family}: skipped: {r.reason}")
                continue
            c = r.calibration
            cv = "n/a" if r.cv_mae is None else f"{r.cv_mae:.4f}"
            out.append(f"calibration {r.family} v{r.version} ({r.status}): n={c.n} alpha={c.alpha:.4f} "
                       f"beta={c.beta:.4f} gamma={c.gamma:.4f} MAE={c.mae:.4f} RMSE={c.rmse:.4f} CV-MAE={cv} A")
        e = self.estimates
        out.append(f"estimates: {FEATURE_SET} v{e.version}: {e.row_count} rows"
                   + (f", skipped {e.parameters.get('skipped')}" if e.parameters.get("skipped") else ""))
        return out


def run_pipeline(engine: sa.Engine, store: FeatureStore, *, source: str | None = "supercon",
                 force: bool = False) -> PipelineSummary:
    """Geometry of ``source``'s cuprate structures, calibrations on every structure with geometry, then estimates."""
    geometry = geometry_run(engine, source=source)
    calibrations = fit_calibrations(engine, force=force)
    return PipelineSummary(geometry, calibrations, estimate_distances(engine, store))
