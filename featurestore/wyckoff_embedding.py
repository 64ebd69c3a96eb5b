"""Wyckoff-position embeddings for Wren (R. Goodall's thesis, ch. 6.3.3), built from pyxtal.

Every Wyckoff position of the 230 space groups (1,731 of them) gets a vector of counts:

1. one-hot crystal system, 6 classes: triclinic, monoclinic, orthorhombic, tetragonal,
   hexagonal, cubic.  Trigonal groups (143-167) count as hexagonal, i.e. these are the six
   crystal *families*; the thesis says "6 crystal systems" and its published embedding file
   merges trigonal and hexagonal the same way (352 positions in one class).
2. one-hot Bravais centring, 5 classes: P, C (one-face centred: A or C in the ITA standard
   settings), I, F, R (rhombohedral, described on hexagonal axes).
3. for every site of the position, +1 on its *algebraic term* and +1 on its *offset*: a site
   such as ``-x+y+1/4, y, z+3/4`` splits into the offset ``(1/4, 0, 3/4)`` and the algebraic
   term ``(-x+y, y, z)`` (thesis eq. 6.1).  A term is the whole coordinate triple (the 3x3
   integer linear part of the site's affine map), not a single coordinate; an offset is the
   whole translation triple, reduced mod 1.

Which sites count is a choice, the ``sites`` argument:

- ``"listed"`` (default): the sites as the ITA/Bilbao table lists them (pyxtal's first of each
  set related by centring translations), each counted once per centring translation with the
  listed site's offset.  The centring is already in block 2; both blocks of a row sum to the
  multiplicity; this is how aviary's published file ``bra-alg-off.json`` counts (e.g. all 32
  sites of Fm-3m 32f on offset ``(0, 0, 0)``).
- ``"orbit"``: every site of the conventional cell, centring-translated copies with their own
  offsets.  This is the literal reading of "a sum over all the allowed sites" and gives the
  thesis' "8's" on the offsets of the 32f example (8 on each of the four F translations).

Both give the three 32f positions of 202, 209 and 225 one shared embedding.

Counts against the thesis (1,731 positions, 185 terms, 248 offsets, 444 dims, 1,038 distinct
rows): positions and terms match exactly with either choice; ``"listed"`` gives 218 offsets,
414 dims and 1,072 distinct rows, ``"orbit"`` 326 offsets, 522 dims and 1,056 distinct rows.
The thesis' 248 and 1,038 are those of the published file, and its offset block is not a
function of the sites (the identity site ``x, y, z`` lands on different columns in different
groups).  It is reproduced column for column, outside Fd-3 (203), by the ``"listed"`` rule
after shifting *all* offsets of a position by ``(z, z, z)``, ``z`` being the z-translation of
the position's *last* listed site, in floating point (so e.g. 1/6 + 2/3 and 5/6 become two
columns).  That gives 251 offset columns: the file's 244 used outside 203, and 7 used only by
203 where the file has 4, because pyxtal lists other centring-equivalent representatives for
203 than Bilbao (16c ``1/4,1/4,0`` for ``3/4,3/4,0``); 244 + 4 = 248.  In exact arithmetic the
shift gives 243 offsets and exactly 1,038 distinct rows.  It has no crystallographic meaning
(P-1 1a at 0,0,0 and 1h at 1/2,1/2,1/2 get one row) and looks like a loop variable leaking
between sites, so it is not reproduced here; a test checks the explanation (1,038) instead.
The thesis text's 32f example ("8's" on eight offsets, 64 counts for 32 sites) matches neither
file nor rule.

Setting: pyxtal's tables are the ITA standard settings as on the Bilbao server (unique axis
b, cell choice 1, origin choice 2 where there are two, hexagonal axes for R groups).  Letters
and multiplicities equal pymatgen's ``WYCKOFF_MULTIPLICITY_DICT`` and spglib's, which
``pymatgen.analysis.prototypes`` protostructure labels use; origin choice does not change a
letter, but spglib's default setting for the 24 two-origin groups is origin choice 1, so
its coordinates (not letters) differ from the offsets here for those groups.  (Origin
choice 1 or rhombohedral axes do not give the thesis counts either: 209 listed offsets with
origin choice 1, 195 terms on rhombohedral axes.)

Building the table takes ~2 s of pyxtal work, so it is cached per process and on disk
(``platformdirs.user_cache_dir("matlake")``), keyed by site convention, pyxtal version and
table version.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Literal, get_args

import numpy as np

__all__ = [
    "CENTRINGS",
    "CRYSTAL_SYSTEMS",
    "SITE_CONVENTIONS",
    "SiteConvention",
    "UnknownWyckoffPositionError",
    "WyckoffEmbeddingTable",
    "build_wyckoff_embedding_table",
    "cache_file",
    "multiplicity",
    "wyckoff_embedding_table",
]

log = logging.getLogger(__name__)

TABLE_VERSION = 1  # bump when the layout or the term/offset rules change
CRYSTAL_SYSTEMS: tuple[str, ...] = (
    "triclinic", "monoclinic", "orthorhombic", "tetragonal", "hexagonal", "cubic",
)  # fmt: skip
CENTRINGS: tuple[str, ...] = ("P", "C", "I", "F", "R")
_FIRST_GROUP_OF_SYSTEM = (1, 3, 16, 75, 143, 195)  # ITA numbering; 143-167 trigonal go to "hexagonal"
_HALF, _THIRD = Fraction(1, 2), Fraction(1, 3)
_CENTRING_VECTORS: dict[str, tuple[tuple[Fraction, ...], ...]] = {
    "P": ((0, 0, 0),),
    "A": ((0, 0, 0), (0, _HALF, _HALF)),
    "B": ((0, 0, 0), (_HALF, 0, _HALF)),
    "C": ((0, 0, 0), (_HALF, _HALF, 0)),
    "I": ((0, 0, 0), (_HALF, _HALF, _HALF)),
    "F": ((0, 0, 0), (0, _HALF, _HALF), (_HALF, 0, _HALF), (_HALF, _HALF, 0)),
    "R": ((0, 0, 0), (2 * _THIRD, _THIRD, _THIRD), (_THIRD, 2 * _THIRD, 2 * _THIRD)),  # obverse, hex axes
}  # fmt: skip

Term = tuple[int, ...]  # 9 ints: row-major linear part of a site's affine map
Offset = tuple[Fraction, Fraction, Fraction]
SiteConvention = Literal["listed", "orbit"]
SITE_CONVENTIONS: tuple[str, ...] = get_args(SiteConvention)


class UnknownWyckoffPositionError(KeyError):
    """A (space group, Wyckoff letter) pair that does not exist."""

    def __init__(self, spacegroup: object, letter: object, letters: str = "") -> None:
        self.spacegroup, self.letter = spacegroup, letter
        if isinstance(spacegroup, int) and 1 <= spacegroup <= 230:
            self.message = f"space group {spacegroup} has no Wyckoff position {letter!r} (it has {letters})"
        else:
            self.message = f"space group {spacegroup!r} is not a space-group number 1..230"
        super().__init__((spacegroup, letter))

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, eq=False)
class WyckoffEmbeddingTable:
    """One row of counts per Wyckoff position; arrays are read-only and shared by callers."""

    keys: list[tuple[int, str]]  # (space group, letter), groups ascending, letters a, b, ..., z, A
    matrix: np.ndarray  # (n_positions, n_features) float32
    index: dict[tuple[int, str], int]
    feature_names: list[str]
    multiplicities: np.ndarray  # (n_positions,) int32, conventional-cell multiplicity

    def row(self, spacegroup: int, letter: str) -> int:
        """Row number of a position (letters are case-sensitive: 47 ``A`` is not ``a``)."""
        try:
            return self.index[(int(spacegroup), letter)]
        except (KeyError, TypeError, ValueError):
            sg = int(spacegroup) if isinstance(spacegroup, int | np.integer) else spacegroup
            raise UnknownWyckoffPositionError(sg, letter, self._letters(sg)) from None

    def lookup(self, spacegroup: int, letter: str) -> np.ndarray:
        """The embedding of one Wyckoff position."""
        return self.matrix[self.row(spacegroup, letter)]

    def multiplicity(self, spacegroup: int, letter: str) -> int:
        """Number of sites of the position in the conventional cell."""
        return int(self.multiplicities[self.row(spacegroup, letter)])

    def section(self, name: str) -> slice:
        """Columns of one block: ``crystal_system``, ``centring``, ``algebraic`` or ``offset``."""
        cols = [i for i, f in enumerate(self.feature_names) if f.partition(":")[0] == name]
        if not cols:
            raise KeyError(f"no feature block {name!r}")
        return slice(cols[0], cols[-1] + 1)

    def _letters(self, spacegroup: object) -> str:
        return "".join(letter for sg, letter in self.keys if sg == spacegroup)


@cache
def wyckoff_embedding_table(sites: SiteConvention = "listed") -> WyckoffEmbeddingTable:
    """The table, from the disk cache when there is a valid one, else built and cached."""
    path = cache_file(sites)
    table = _read(path)
    if table is None:
        table = build_wyckoff_embedding_table(sites)
        _write(path, table)
    return table


def multiplicity(spacegroup: int, letter: str) -> int:
    """Multiplicity of a Wyckoff position (conventional cell), from the cached table."""
    return wyckoff_embedding_table().multiplicity(spacegroup, letter)


def cache_file(sites: SiteConvention = "listed") -> Path:
    """Where the table is cached; follows ``XDG_CACHE_HOME`` like other user caches."""
    _check_sites(sites)
    try:
        from platformdirs import user_cache_dir

        root = Path(user_cache_dir("matlake", appauthor=False))
    except ImportError:  # platformdirs comes with pooch, but do not insist on it
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "matlake"
    return root / f"wyckoff-embedding-v{TABLE_VERSION}-{sites}-pyxtal-{version('pyxtal')}.npz"


def _check_sites(sites: object) -> None:
    if sites not in SITE_CONVENTIONS:
        raise ValueError(f"sites must be one of {', '.join(SITE_CONVENTIONS)}, not {sites!r}")


def build_wyckoff_embedding_table(sites: SiteConvention = "listed") -> WyckoffEmbeddingTable:
    """Enumerate all Wyckoff positions with pyxtal and count their terms and offsets (~2 s).

    ``sites`` picks which sites a row sums over (see the module docstring): the ITA-listed
    ones weighted by the number of centring translations, or the whole conventional-cell orbit.
    """
    _check_sites(sites)
    rows = list(_enumerate_positions(orbit=sites == "orbit"))
    terms = sorted({t for *_, counted in rows for t, _, _ in counted}, key=_term_order)
    offsets = sorted({o for *_, counted in rows for _, o, _ in counted})  # (0, 0, 0) first
    names = (
        [f"crystal_system:{c}" for c in CRYSTAL_SYSTEMS]
        + [f"centring:{c}" for c in CENTRINGS]
        + [f"algebraic:{_format_term(t)}" for t in terms]
        + [f"offset:{_format_offset(o)}" for o in offsets]
    )
    first_term = len(CRYSTAL_SYSTEMS) + len(CENTRINGS)
    col = {("t", t): i for i, t in enumerate(terms, first_term)}
    col.update({("o", o): i for i, o in enumerate(offsets, first_term + len(terms))})
    matrix = np.zeros((len(rows), len(names)), dtype=np.float32)
    for r, (sg, _, _, centring, counted) in enumerate(rows):
        matrix[r, _crystal_system(sg)] = 1
        matrix[r, len(CRYSTAL_SYSTEMS) + CENTRINGS.index("C" if centring in "AB" else centring)] = 1
        for term, offset, weight in counted:
            matrix[r, col[("t", term)]] += weight
            matrix[r, col[("o", offset)]] += weight
    keys = [(sg, letter) for sg, letter, *_ in rows]
    mult = np.array([m for _, _, m, *_ in rows], dtype=np.int32)
    return _table(keys, matrix, names, mult)


def _enumerate_positions(
    orbit: bool = False,
) -> Iterator[tuple[int, str, int, str, list[tuple[Term, Offset, int]]]]:
    """(group, letter, multiplicity, centring, counted (term, offset, weight)) for all 1,731 positions.

    Listed sites weigh the number of centring translations; orbit sites weigh 1 each.
    """
    from pyxtal.symmetry import Group  # slow import: only when the cache is cold

    for sg in range(1, 231):
        group = Group(sg)
        centring = group.symbol[0]
        vectors = _CENTRING_VECTORS[centring]
        for wp in reversed(group.Wyckoff_positions):  # pyxtal lists the general position first
            listed = _listed_sites([op.affine_matrix for op in wp.ops], vectors)
            if len(listed) * len(vectors) != wp.multiplicity:
                raise RuntimeError(f"pyxtal's {sg}{wp.letter} sites do not split into centring orbits")
            if orbit:
                counted = [(t, _translate(o, v), 1) for t, o in listed for v in vectors]
            else:
                counted = [(t, o, len(vectors)) for t, o in listed]
            yield sg, wp.letter, wp.multiplicity, centring, counted


def _translate(offset: Offset, vector: tuple[Fraction, ...]) -> Offset:
    x, y, z = ((o + v) % 1 for o, v in zip(offset, vector, strict=True))
    return x, y, z


def _listed_sites(
    affines: list[np.ndarray], centring: tuple[tuple[Fraction, ...], ...]
) -> list[tuple[Term, Offset]]:
    """One (term, offset) per set of sites related by centring translations, in pyxtal order."""
    seen: set[tuple[Term, Offset]] = set()
    sites = []
    for affine in affines:
        term = tuple(int(v) for v in np.rint(affine[:3, :3]).ravel())
        offset = tuple(_fraction(v) % 1 for v in affine[:3, 3])
        orbit = min(tuple((o + c) % 1 for o, c in zip(offset, vec, strict=True)) for vec in centring)
        if (term, orbit) not in seen:
            seen.add((term, orbit))
            sites.append((term, offset))
    return sites


def _fraction(value: float) -> Fraction:
    frac = Fraction(float(value)).limit_denominator(48)
    if abs(float(frac) - value) > 1e-6:
        raise ValueError(f"site offset {value} is not a simple fraction")
    return frac


def _term_order(term: Term) -> tuple[int, ...]:
    """Column order: terms with more free coordinates first, the constant term (0, 0, 0) last."""
    return (-int(np.linalg.matrix_rank(np.reshape(term, (3, 3)))), *(-v for v in term))


def _crystal_system(spacegroup: int) -> int:
    return sum(spacegroup >= first for first in _FIRST_GROUP_OF_SYSTEM) - 1


def _format_term(term: Term) -> str:
    coords = []
    for row in (term[0:3], term[3:6], term[6:9]):
        parts = [f"{'-' if c < 0 else '+'}{'' if abs(c) == 1 else abs(c)}{v}" for c, v in zip(row, "xyz") if c]
        coords.append("".join(parts).lstrip("+") or "0")
    return f"({', '.join(coords)})"


def _format_offset(offset: Offset) -> str:
    return f"({', '.join(str(o) for o in offset)})"


def _table(
    keys: list[tuple[int, str]], matrix: np.ndarray, names: list[str], mult: np.ndarray
) -> WyckoffEmbeddingTable:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    mult = np.ascontiguousarray(mult, dtype=np.int32)
    if matrix.shape != (len(keys), len(names)) or mult.shape != (len(keys),):
        raise ValueError(f"inconsistent Wyckoff table {matrix.shape}: {len(keys)} keys, {len(names)} names")
    matrix.flags.writeable = False
    mult.flags.writeable = False
    return WyckoffEmbeddingTable(keys, matrix, {k: i for i, k in enumerate(keys)}, names, mult)


def _read(path: Path) -> WyckoffEmbeddingTable | None:
    """The cached table, or None when it is missing or unreadable (it is then rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(zip(npz["spacegroups"].tolist(), npz["letters"].tolist(), strict=True))
            return _table(keys, npz["matrix"], npz["feature_names"].tolist(), npz["multiplicities"])
    except FileNotFoundError:
        return None
    except Exception as exc:  # a truncated or foreign file must not break feature building
        log.warning("ignoring unreadable Wyckoff embedding cache %s: %s", path, exc)
        return None


def _write(path: Path, table: WyckoffEmbeddingTable) -> None:
    """Write atomically so concurrent processes never read half a file; failure only costs speed."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                spacegroups=np.array([sg for sg, _ in table.keys], dtype=np.int16),
                letters=np.array([letter for _, letter in table.keys]),
                matrix=table.matrix,
                feature_names=np.array(table.feature_names),
                multiplicities=table.multiplicities,
            )
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not cache the Wyckoff embedding table at %s: %s", path, exc)
        tmp.unlink(missing_ok=True)
