"""In-plane and apical Cu-O distances of the CuO2-plane Cu sites of a cuprate structure.

These two distances are the structural descriptors that Goodall et al. (thesis, ch. 3) relate
to Tc; they serve as reference targets for the lattice-parameter calibration.

How a site is read:
- The stacking axis (normal to the CuO2 planes) defaults to the direction of the shortest
  reciprocal-lattice vector, i.e. the normal of the most widely spaced lattice planes, which
  in every layered cuprate cell is the layer normal. It works for primitive and triclinic
  cells where lattice vector c is not the normal. Pass `stacking_axis` for cells where it
  fails (e.g. incommensurate-modulation supercells with long in-plane axes).
- Planar O: O within `planar_cutoff` whose height along the axis is at most `max_buckle`.
  The 4 nearest must have heights within `height_spread` of each other (buckled planes of
  Y123 or Bi2212 put all four on one side by ~0.1-0.3 A) and surround Cu as a square
  (azimuth gaps 90 +/- 30 degrees). Chain Cu (Y123 Cu1) has only 2 such O and is skipped.
- Apical O: the nearest O on each side of the plane within `apical_cutoff` that lies within
  `max_apical_tilt` degrees of the axis. The generous default cutoff (3.2 A) reaches the
  long Hg/Tl apical bonds (2.8-3.0 A); the tilt limit keeps O of a neighbouring CuO2 plane
  (laterally offset by ~a/2) out. Pyramidal sites report one bond, octahedral the mean of two.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Lattice, PeriodicSite, Structure

__all__ = ["CuSiteGeometry", "cu_o_distances", "stacking_axis", "summarise"]

PLANAR_CUTOFF = 2.3
MAX_BUCKLE = 0.6
HEIGHT_SPREAD = 0.5
APICAL_CUTOFF = 3.2
MAX_APICAL_TILT = 20.0
SQUARE_ANGLE_TOL = 30.0


@dataclass(frozen=True)
class CuSiteGeometry:
    """Cu-O distances (A) of one Cu site in a CuO2 plane."""

    site_index: int
    in_plane: float  # mean of the four planar Cu-O bonds
    apical: float | None  # mean apical Cu-O bond; None when no apical O within the cutoff
    in_plane_bonds: tuple[float, ...]
    apical_bonds: tuple[float, ...]
    buckling: float  # mean height (A) of the planar O above/below Cu along the axis


def stacking_axis(lattice: Lattice) -> np.ndarray:
    """Unit normal of the most widely spaced lattice planes (the CuO2-layer normal)."""
    reduced = lattice.reciprocal_lattice_crystallographic.get_lll_reduced_lattice().matrix
    best = min(
        (np.asarray(hkl) @ reduced for hkl in itertools.product((-1, 0, 1), repeat=3) if any(hkl)),
        key=lambda v: float(np.linalg.norm(v)),
    )
    return best / np.linalg.norm(best)


def _fraction(site: PeriodicSite, symbol: str) -> float:
    return sum(occ for sp, occ in site.species.items() if getattr(sp, "symbol", str(sp)) == symbol)


def _is_square(lateral: np.ndarray) -> bool:
    """Four in-plane bond vectors spaced roughly 90 degrees apart."""
    angles = np.sort(np.degrees(np.arctan2(lateral[:, 1], lateral[:, 0])))
    gaps = np.diff(np.append(angles, angles[0] + 360.0))
    return bool(np.all(np.abs(gaps - 90.0) <= SQUARE_ANGLE_TOL))


def _in_plane_basis(axis: np.ndarray) -> np.ndarray:
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(axis, helper)
    u /= np.linalg.norm(u)
    return np.stack([u, np.cross(axis, u)])


def _site_geometry(
    structure: Structure,
    index: int,
    axis: np.ndarray,
    basis: np.ndarray,
    planar_cutoff: float,
    apical_cutoff: float,
) -> CuSiteGeometry | None:
    site = structure[index]
    radius = max(planar_cutoff, apical_cutoff)
    oxygens = [nb for nb in structure.get_neighbors(site, radius) if _fraction(nb, "O") >= 0.5]
    if not oxygens:
        return None
    vectors = np.array([nb.coords - site.coords for nb in oxygens])
    dist = np.linalg.norm(vectors, axis=1)
    height = vectors @ axis

    planar = np.flatnonzero((dist <= planar_cutoff) & (np.abs(height) <= MAX_BUCKLE))
    if planar.size < 4:
        return None
    planar = planar[np.argsort(dist[planar])[:4]]
    if np.ptp(height[planar]) > HEIGHT_SPREAD or not _is_square(vectors[planar] @ basis.T):
        return None

    plane_height = float(np.mean(height[planar]))
    tilt = np.degrees(np.arccos(np.clip(np.abs(height) / dist, 0.0, 1.0)))
    is_apical = (dist <= apical_cutoff) & (tilt <= MAX_APICAL_TILT)
    apical_bonds = []
    for side in (height > plane_height, height < plane_height):
        candidates = np.flatnonzero(is_apical & side)
        if candidates.size:
            apical_bonds.append(float(dist[candidates[np.argmin(dist[candidates])]]))

    in_plane_bonds = tuple(float(d) for d in np.sort(dist[planar]))
    return CuSiteGeometry(
        site_index=index,
        in_plane=float(np.mean(in_plane_bonds)),
        apical=float(np.mean(apical_bonds)) if apical_bonds else None,
        in_plane_bonds=in_plane_bonds,
        apical_bonds=tuple(sorted(apical_bonds)),
        buckling=float(np.mean(np.abs(height[planar]))),
    )


def cu_o_distances(
    structure: Structure,
    stacking_axis_cartesian: Sequence[float] | None = None,
    planar_cutoff: float = PLANAR_CUTOFF,
    apical_cutoff: float = APICAL_CUTOFF,
) -> list[CuSiteGeometry]:
    """Geometry of every Cu site that sits in a CuO2 plane (chain Cu and others skipped).

    A site counts as Cu when Cu holds at least half its occupancy (same for O), so
    partially disordered structures work.
    """
    if stacking_axis_cartesian is None:
        axis = stacking_axis(structure.lattice)
    else:
        axis = np.asarray(stacking_axis_cartesian, dtype=float)
        if axis.shape != (3,) or not math.isfinite(float(np.linalg.norm(axis))) or np.linalg.norm(axis) == 0:
            raise ValueError(f"stacking axis must be a non-zero 3-vector, got {stacking_axis_cartesian!r}")
        axis = axis / np.linalg.norm(axis)
    basis = _in_plane_basis(axis)
    geometries = []
    for index, site in enumerate(structure):
        if _fraction(site, "Cu") < 0.5:
            continue
        geometry = _site_geometry(structure, index, axis, basis, planar_cutoff, apical_cutoff)
        if geometry is not None:
            geometries.append(geometry)
    return geometries


def summarise(geometries: Sequence[CuSiteGeometry]) -> tuple[float, float | None]:
    """Site-averaged (in-plane, apical) distances; apical averages only sites that have one.

    In multilayer cuprates the inner planes have no apical O, so the apical mean is that
    of the outer planes, the quantity the thesis relates to Tc.
    """
    if not geometries:
        raise ValueError("no CuO2-plane Cu sites to summarise")
    in_plane = float(np.mean([g.in_plane for g in geometries]))
    apical = [g.apical for g in geometries if g.apical is not None]
    return in_plane, (float(np.mean(apical)) if apical else None)
