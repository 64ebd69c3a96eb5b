"""In-plane and apical Cu-O distances of the CuO2-plane Cu sites of a cuprate structure.

These two distances are the structural descriptors that Goodall et al. (thesis, ch. 3) relate
to Tc; they serve as reference targets for the lattice-parameter calibration.

How a site is read (the plane is found from the chemistry, not from the cell):
- CuO4 square: of the O within `planar_cutoff` of a Cu, the four nearest that lie within
  `PLANARITY_TOL` of a common plane (least-squares fit) and surround Cu as a square (azimuth
  gaps 90 +/- 30 degrees, Cu at most `MAX_BUCKLE` off their plane). The fitted plane's normal is
  the site's normal. Buckled planes (Y123, Bi2212 put all four O on one side of Cu by ~0.1-0.3 A)
  are still squares: the four O are coplanar, Cu sits off their plane.
- CuO2 plane: a square counts only when each of its four O is also a corner of another Cu's
  square whose normal is within `MAX_NORMAL_ANGLE` of its own (corner-sharing in two directions).
  That keeps the chain Cu of Y123 out: its O1-O4 square is planar too, but the apical O4 is not a
  corner of the plane Cu's square. The axis of a site is the mean normal of its connected plane,
  so octahedral tilts (LTO La2CuO4) do not tilt it. This works for any cell shape and for
  infinite-layer CaCuO2, whose planes (c = 3.2 A) are closer than the Cu-Cu spacing (3.86 A).
- Fallback: when no Cu has such a square (e.g. a distorted or disordered cell), the axis is the
  normal of the most widely spaced lattice planes (:func:`stacking_axis`) and the planar O are the
  four nearest near that plane; `CuSiteGeometry.axis_from` says "lattice" then ("given" for an
  axis passed by the caller, "cuo4_squares" otherwise).
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

__all__ = ["CuSiteGeometry", "cu_o_distances", "cuo2_plane_normals", "stacking_axis", "summarise"]

PLANAR_CUTOFF = 2.3
MAX_BUCKLE = 0.6
HEIGHT_SPREAD = 0.5
APICAL_CUTOFF = 3.2
MAX_APICAL_TILT = 20.0
SQUARE_ANGLE_TOL = 30.0
PLANARITY_TOL = 0.25  # A: largest distance of one of the four O from their fitted plane
MAX_NORMAL_ANGLE = 25.0  # degrees between the normals of two squares sharing an O corner
_SQUARE_CANDIDATES = 6  # nearest O tried for a square (4 of 6: 15 sets)
_SAME_BOND = 1e-3  # A: two bond vectors that differ by less are the same bond


@dataclass(frozen=True)
class CuSiteGeometry:
    """Cu-O distances (A) of one Cu site in a CuO2 plane."""

    site_index: int
    in_plane: float  # mean of the four planar Cu-O bonds
    apical: float | None  # mean apical Cu-O bond; None when no apical O within the cutoff
    in_plane_bonds: tuple[float, ...]
    apical_bonds: tuple[float, ...]
    buckling: float  # mean height (A) of the planar O above/below Cu along the axis
    axis: tuple[float, float, float]  # unit CuO2-plane normal (Cartesian) the heights are measured along
    axis_from: str  # "cuo4_squares", "lattice" (fallback: no Cu had a CuO4 square in a plane) or "given"


def stacking_axis(lattice: Lattice) -> np.ndarray:
    """Unit normal of the most widely spaced lattice planes: the layer normal of most layered cells.

    Only a fallback for :func:`cu_o_distances`: it is wrong where the layers are closer than the
    in-plane spacing (infinite-layer CaCuO2).
    """
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


class _Neighbours:
    """Bond vectors from every Cu site to the O around it and from every O site to the Cu around it.

    One neighbour-list call for the whole structure; a Cu's neighbours are only O and an O's only Cu.
    """

    def __init__(self, structure: Structure, radius: float) -> None:
        self.is_cu = np.array([_fraction(site, "Cu") >= 0.5 for site in structure])
        self.is_o = np.array([_fraction(site, "O") >= 0.5 for site in structure])
        centre, other, images, dist = structure.get_neighbor_list(radius)
        keep = (self.is_cu[centre] & self.is_o[other]) | (self.is_o[centre] & self.is_cu[other])
        centre, other, images, dist = centre[keep], other[keep], images[keep], dist[keep]
        cart = structure.cart_coords
        vectors = cart[other] + images @ structure.lattice.matrix - cart[centre]
        order = np.lexsort((dist, centre))
        self.other, self.vectors, self.dist = other[order], vectors[order], dist[order]
        self.start = np.searchsorted(centre[order], np.arange(len(structure) + 1))

    def around(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(site indices, bond vectors, distances) of the neighbours of one site, nearest first."""
        span = slice(self.start[index], self.start[index + 1])
        return self.other[span], self.vectors[span], self.dist[span]


def _square(vectors: np.ndarray, dist: np.ndarray, planar_cutoff: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(positions in `vectors` of the four square O, plane normal) for one Cu, or None.

    Of the nearest O within the cutoff, the set of four with the shortest bonds that is planar and square.
    """
    near = np.flatnonzero(dist <= planar_cutoff)[:_SQUARE_CANDIDATES]
    if near.size < 4:
        return None
    sets = sorted(itertools.combinations(near.tolist(), 4), key=lambda four: float(dist[list(four)].sum()))
    for four in sets:
        bonds = vectors[list(four)]
        centroid = bonds.mean(axis=0)
        normal = np.linalg.svd(bonds - centroid)[2][2]
        if np.max(np.abs((bonds - centroid) @ normal)) > PLANARITY_TOL or abs(centroid @ normal) > MAX_BUCKLE:
            continue
        if _is_square(bonds @ _in_plane_basis(normal).T):
            return np.asarray(four), normal
    return None


def cuo2_plane_normals(structure: Structure, planar_cutoff: float = PLANAR_CUTOFF
                       ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Cu site index -> (indices of its four planar O among its neighbours, unit plane normal).

    Only Cu whose CuO4 square shares all four corners with squares of other Cu of nearly the same
    normal (a corner-sharing CuO2 plane) are kept; the normal is the mean over the connected plane.
    """
    neighbours = _Neighbours(structure, planar_cutoff)
    return _planes(neighbours, planar_cutoff)


def _planes(neighbours: _Neighbours, planar_cutoff: float) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    squares: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for index in np.flatnonzero(neighbours.is_cu):
        _, vectors, dist = neighbours.around(int(index))
        found = _square(vectors, dist, planar_cutoff)
        if found is not None:
            squares[int(index)] = found

    cos_limit = math.cos(math.radians(MAX_NORMAL_ANGLE))

    def partners(index: int) -> list[int] | None:
        """The Cu across each corner of the square whose own square holds that corner; None if a corner has none."""
        others, vectors, _ = neighbours.around(index)
        normal = squares[index][1]
        found = []
        for corner in squares[index][0]:
            oxygen, bond = int(others[corner]), vectors[corner]
            across, to_cu, _ = neighbours.around(oxygen)
            match = None
            for cu, back in zip(across.tolist(), to_cu, strict=True):
                if cu not in squares or (cu == index and np.allclose(-back, bond, atol=_SAME_BOND)):
                    continue
                _, cu_vectors, _ = neighbours.around(cu)
                corners = cu_vectors[squares[cu][0]]
                if abs(float(squares[cu][1] @ normal)) >= cos_limit and \
                        np.any(np.all(np.abs(corners + back) <= _SAME_BOND, axis=1)):
                    match = cu
                    break
            if match is None:
                return None
            found.append(match)
        return found

    links: dict[int, list[int]] = {}
    changed = True
    while changed:  # dropping a square can leave a neighbour with a free corner
        changed = False
        links = {}
        for index in list(squares):
            found = partners(index)
            if found is None:
                del squares[index]
                changed = True
            else:
                links[index] = found

    planes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    seen: set[int] = set()
    for start in links:
        if start in seen:
            continue
        members, stack = [], [start]
        seen.add(start)
        while stack:
            site = stack.pop()
            members.append(site)
            for other in links[site]:
                if other not in seen:
                    seen.add(other)
                    stack.append(other)
        reference = squares[start][1]
        mean = np.sum([np.sign(squares[m][1] @ reference) * squares[m][1] for m in members], axis=0)
        mean /= np.linalg.norm(mean)
        for m in members:
            planes[m] = (squares[m][0], mean)
    return planes


def _geometry(
    index: int,
    vectors: np.ndarray,
    dist: np.ndarray,
    planar: np.ndarray,
    axis: np.ndarray,
    axis_from: str,
    apical_cutoff: float,
) -> CuSiteGeometry:
    """Distances of one site from its O bond vectors, the four planar ones and the plane normal."""
    height = vectors @ axis
    plane_height = float(np.mean(height[planar]))
    tilt = np.degrees(np.arccos(np.clip(np.abs(height) / dist, 0.0, 1.0)))
    is_apical = (dist <= apical_cutoff) & (tilt <= MAX_APICAL_TILT)
    is_apical[planar] = False
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
        axis=(float(axis[0]), float(axis[1]), float(axis[2])),
        axis_from=axis_from,
    )


def _planar_along(vectors: np.ndarray, dist: np.ndarray, axis: np.ndarray, planar_cutoff: float) -> np.ndarray | None:
    """The four nearest O near the plane normal to a given axis, when they form a square (the axis-given path)."""
    height = vectors @ axis
    planar = np.flatnonzero((dist <= planar_cutoff) & (np.abs(height) <= MAX_BUCKLE))
    if planar.size < 4:
        return None
    planar = planar[np.argsort(dist[planar], kind="stable")[:4]]
    if np.ptp(height[planar]) > HEIGHT_SPREAD or not _is_square(vectors[planar] @ _in_plane_basis(axis).T):
        return None
    return planar


def cu_o_distances(
    structure: Structure,
    stacking_axis_cartesian: Sequence[float] | None = None,
    planar_cutoff: float = PLANAR_CUTOFF,
    apical_cutoff: float = APICAL_CUTOFF,
) -> list[CuSiteGeometry]:
    """Geometry of every Cu site that sits in a CuO2 plane (chain Cu and others skipped).

    A site counts as Cu when Cu holds at least half its occupancy (same for O), so
    partially disordered structures work. With `stacking_axis_cartesian` the planes are taken
    normal to that axis instead of being found from the CuO4 squares.
    """
    neighbours = _Neighbours(structure, max(planar_cutoff, apical_cutoff))
    if stacking_axis_cartesian is None:
        planes = _planes(neighbours, planar_cutoff)
        if planes:
            geometries = []
            for index, (planar, axis) in sorted(planes.items()):
                _, vectors, dist = neighbours.around(index)
                geometries.append(_geometry(index, vectors, dist, planar, axis, "cuo4_squares", apical_cutoff))
            return geometries
        axis, axis_from = stacking_axis(structure.lattice), "lattice"
    else:
        axis = np.asarray(stacking_axis_cartesian, dtype=float)
        if axis.shape != (3,) or not math.isfinite(float(np.linalg.norm(axis))) or np.linalg.norm(axis) == 0:
            raise ValueError(f"stacking axis must be a non-zero 3-vector, got {stacking_axis_cartesian!r}")
        axis, axis_from = axis / np.linalg.norm(axis), "given"
    geometries = []
    for index in np.flatnonzero(neighbours.is_cu):
        _, vectors, dist = neighbours.around(int(index))
        planar = _planar_along(vectors, dist, axis, planar_cutoff)
        if planar is not None:
            geometries.append(_geometry(int(index), vectors, dist, planar, axis, axis_from, apical_cutoff))
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
