"""Wyckoff representations (protostructure labels) of crystal structures (R. Goodall's thesis, ch. 6.3).

A protostructure label is pymatgen's (``pymatgen.analysis.prototypes``, upstreamed from aviary)
AFLOW-style prototype label with the chemical system appended::

    AB_cF8_225_a_b:Cl-Na      prototype formula _ Pearson symbol _ space group _ Wyckoff letters per element : elements

Elements are in alphabetical order (A = Cl, B = Na); each element's Wyckoff positions are written as
``<count><letter>`` with a count of 1 left out (``2ij`` = two ``i`` positions and one ``j``).

Backend: moyopy by default.  It is several times faster than spglib (``bench/bench_protostructure.py``),
and the two agree on the space group and Wyckoff letters for the great majority of structures
(canonical labels: all 288 AFLOW prototypes; 99.2 % of 1,200 ordered Materials Project cuprate-database
structures).  Raw labels differ more often (3.5-6 %), almost all in the Pearson symbol of base-centred
orthorhombic groups (moyopy ``oS``, spglib/AFLOW ``oC``); ``canonical_protostructure`` writes ``oC`` for
both.  Tolerances: symprec 0.1 A for both (the Materials Project's and the thesis'); the angle tolerance
is 5 degrees for spglib (idem) but moyopy's own default (none: its lattice check derives from symprec)
for moyopy, because moyopy 0.21 with an explicit angle tolerance of 5 degrees never returns on some real
structures (4 of those 1,200: SiC polytypes, Ag2Te) that it labels in a millisecond without one, and
pymatgen's moyopy labels pass none either.  Labels with and without it differed on 3 of the other
1,196.  The thesis used spglib: ``backend="spglib"`` reproduces it.  Every row stores the label, the
backend, its version, the pymatgen version (the Wyckoff tables come from it) and the tolerances actually
used (``angle_tolerance`` null = the backend's default), so labels from different runs are never mixed
silently.

Relation to pymatgen: the label string, the validity check, the canonicalisation and the counts are
pymatgen's (same tables, same rules), and the tests assert equality with
``get_protostructure_label_from_moyopy``, ``get_protostructure_label_from_spglib``,
``canonicalize_element_wyckoffs``, ``count_wyckoff_positions`` and ``count_crystal_sites`` on all
288 AFLOW prototypes.  They are re-implemented on pymatgen's own data files rather than imported
because (1) ``import pymatgen.analysis.prototypes`` loads its 288-structure AFLOW library eagerly,
7-10 s here, which every time-limit worker (and every restart after a time-out) would pay;
(2) pymatgen's moyopy function takes no angle tolerance; (3) its spglib function goes through
``SpacegroupAnalyzer.get_symmetrized_structure`` (2.3x slower than the dataset alone, which is all a label
needs) and retries invalid results at ``symprec=1e-5``, which would make the stored tolerance untrue: here
an invalid representation is recorded (``is_valid=False``) and the cleaning step drops it, as in the
thesis.  One deliberate difference: spglib orbits are its ``crystallographic_orbits`` (primitive-cell
symmetry, as moyopy's), not ``equivalent_atoms`` (input-cell symmetry), so a supercell gets the label of
its primitive cell instead of an invalid one (pymatgen's first attempt; its retry then repairs it).
Labels are computed on the element-only cell: oxidation states and site properties (magnetic
moments) are ignored, as a Wyckoff representation names elements only.

Time limit: symmetry search is compiled code (spglib in C, moyopy in Rust) that a Python signal
cannot interrupt, and it can run for minutes on pathological cells (a noisy 12x12x12 supercell:
~30 s in moyopy; a noisy 8x8x8 one: ~4 s in spglib).  ``build_protostructure_table`` therefore
runs the search in a worker process that is sent chunks of structures and streams back one row per
structure; when a structure runs past ``time_limit_s`` (or crashes the worker) the worker is
killed, an error row is recorded and the rest of the chunk goes to a fresh worker.  Workers are
plain subprocesses (so this also works inside daemonic Dask worker processes), started once and
reused, and import only numpy, pyarrow, moyopy and spglib (~0.5 s).
"""

from __future__ import annotations

import atexit
import gzip
import json
import logging
import math
import os
import re
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from itertools import groupby, islice
from multiprocessing.connection import Connection
from pathlib import Path
from string import ascii_uppercase
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = [
    "BACKENDS",
    "DEFAULT_ANGLE_TOLERANCE",
    "DEFAULT_BACKEND",
    "DEFAULT_SYMPREC",
    "MAX_SITES",
    "MAX_VOLUME_PER_SITE_A3",
    "MAX_WYCKOFF_POSITIONS",
    "PROTOSTRUCTURE_SCHEMA",
    "ProtostructureInputError",
    "build_protostructure_table",
    "build_protostructure_table_from_json",
    "canonical_protostructure",
    "clean_protostructure_table",
    "cleaning_report",
    "compare_to_aflow_label",
    "count_crystal_sites",
    "count_wyckoff_positions",
    "equivalent_protostructures",
    "load_aflow_prototypes",
    "protostructure_chunk",
    "protostructure_row",
    "relaxation_changed_representation",
    "structure_from_json",
    "to_aflow_convention",
]

Backend = Literal["moyopy", "spglib"]
BACKENDS: tuple[str, ...] = ("moyopy", "spglib")
DEFAULT_BACKEND: Backend = "moyopy"
DEFAULT_SYMPREC = 0.1  # Angstrom (the Materials Project's and the thesis' tolerance)
# degrees, per backend, used for angle_tolerance="auto"; None = the backend's own criterion (see above)
DEFAULT_ANGLE_TOLERANCE: dict[str, float | None] = {"moyopy": None, "spglib": 5.0}
AngleTolerance = float | None | Literal["auto"]

# Thesis tables 6.1-6.3: "Less than 16 Wyckoff Positions", "Less than 64 sites in Crystal Structure",
# "Volume per site less than 500 A^3" (strict; aviary's example script used <= for the first two).
MAX_WYCKOFF_POSITIONS = 16
MAX_SITES = 64
MAX_VOLUME_PER_SITE_A3 = 500.0

PROTOSTRUCTURE_SCHEMA = pa.schema(
    [
        pa.field("structure_id", pa.int64(), nullable=False),
        pa.field("protostructure", pa.string()),  # label as the backend gave it (pymatgen format)
        pa.field("prototype", pa.string()),  # the AFLOW-style part, without ":chemical system"
        pa.field("chemical_system", pa.string()),
        pa.field("spacegroup_number", pa.int16()),
        pa.field("pearson_symbol", pa.string()),  # as the backend gave it (moyopy oS, spglib oC)
        pa.field("wyckoff_letters", pa.string()),  # per element in chemical-system order, "_"-joined
        pa.field("n_wyckoff_positions", pa.int32()),
        pa.field("n_sites", pa.int32()),  # sites in the structure as given
        pa.field("n_sites_conventional", pa.int32()),  # sites in the conventional cell of the label
        pa.field("volume_per_site_a3", pa.float64()),
        pa.field("is_valid", pa.bool_(), nullable=False),  # multiplicities add up to the composition
        pa.field("flag_lt16_wyckoff", pa.bool_()),
        pa.field("flag_lt64_sites", pa.bool_()),
        pa.field("flag_volume_lt500", pa.bool_()),
        pa.field("canonical_protostructure", pa.string()),
        pa.field("n_equivalent", pa.int32()),  # equivalent Wyckoff representations (Wren's augmentations)
        pa.field("backend", pa.string(), nullable=False),
        pa.field("backend_version", pa.string()),
        pa.field("pymatgen_version", pa.string()),
        pa.field("symprec", pa.float64(), nullable=False),  # Angstrom
        pa.field("angle_tolerance", pa.float64()),  # degrees; null = the backend's default
        pa.field("error", pa.string()),  # null on success
        pa.field("elapsed_s", pa.float64()),  # symmetry search and labelling, in the worker
    ]
)
_ROW_FIELDS = tuple(f.name for f in PROTOSTRUCTURE_SCHEMA if f.name not in ("structure_id", "elapsed_s"))


# --------------------------------------------------------------------------------------------
# pymatgen's Wyckoff tables, read from its package data without importing its (slow) module


def _pymatgen_prototypes_dir() -> Path:
    spec = find_spec("pymatgen.analysis")  # imports pymatgen/__init__ and pymatgen/analysis/__init__ only
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("pymatgen is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "prototypes"


@cache
def _multiplicities() -> dict[int, dict[str, int]]:
    with gzip.open(_pymatgen_prototypes_dir() / "wyckoff-position-multiplicities.json.gz", "rt") as f:
        return {int(spg): table for spg, table in json.load(f).items()}


@cache
def _relabelings() -> dict[int, tuple[dict[int, str], ...]]:
    """Per space group, the Wyckoff-letter permutations under the affine normaliser (thesis table 6.5)."""
    with gzip.open(_pymatgen_prototypes_dir() / "wyckoff-position-relabelings.json.gz", "rt") as f:
        raw = json.load(f)
    return {int(spg): tuple({int(k): v for k, v in perm.items()} for perm in perms) for spg, perms in raw.items()}


@cache
def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for package in ("moyopy", "spglib", "pymatgen"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out


# --------------------------------------------------------------------------------------------
# label strings

# pymatgen's RE_WYCKOFF_NO_PREFIX, except that its "[A-z]" also matches "_" (ASCII 95): a letter without a count
_RE_LETTER_NO_COUNT = re.compile(r"((?<![0-9])[A-Za-z])")
_RE_GROUPS = re.compile(r"(\d+|[^\d]+)")


@dataclass(frozen=True)
class _Label:
    formula: str
    pearson: str
    spacegroup: int
    element_wyckoffs: tuple[str, ...]
    chemical_system: str

    @property
    def prototype(self) -> str:
        return "_".join((self.formula, self.pearson, str(self.spacegroup), *self.element_wyckoffs))


def _parse_label(label: str) -> _Label:
    try:
        prototype, chemical_system = label.split(":")
        formula, pearson, spacegroup, *element_wyckoffs = prototype.split("_")
        spg = int(spacegroup)
    except (AttributeError, ValueError) as exc:
        raise ValueError(f"not a protostructure label ('AB_cF8_225_a_b:Cl-Na'): {label!r}") from exc
    if not 1 <= spg <= 230 or not element_wyckoffs or len(element_wyckoffs) != len(chemical_system.split("-")):
        raise ValueError(f"not a protostructure label ('AB_cF8_225_a_b:Cl-Na'): {label!r}")
    return _Label(formula, pearson, spg, tuple(element_wyckoffs), chemical_system)


def _counts_and_letters(element_wyckoffs: str) -> list[tuple[int, str]]:
    """``"2ij"`` -> ``[(2, "i"), (1, "j")]`` for one element's part."""
    groups = _RE_GROUPS.findall(_RE_LETTER_NO_COUNT.sub(r"1\g<1>", element_wyckoffs))
    return [(int(groups[i]), letter) for i in range(0, len(groups), 2) for letter in groups[i + 1]]


def _sort_and_score(element_wyckoffs: str) -> tuple[str, int]:
    """pymatgen's ``sort_and_score_element_wyckoffs``: letters sorted per element; score = sum of letter ranks."""
    parts, score = [], 0
    for part in element_wyckoffs.split("_"):
        pairs = _counts_and_letters(part)
        parts.append("".join(f"{n}{w}" if n != 1 else w for n, w in sorted(pairs, key=lambda p: p[1])))
        score += sum(0 if w == "A" else ord(w) - 96 for _, w in pairs)
    return "_".join(parts), score


@lru_cache(maxsize=65536)
def _wyckoff_orbit(element_wyckoffs: str, spacegroup: int) -> tuple[str, ...]:
    """All equivalent Wyckoff strings of one label, the canonical one (pymatgen's choice: lowest score,
    then lowest string) first and the others sorted."""
    with_counts = _RE_LETTER_NO_COUNT.sub(r"1\g<1>", element_wyckoffs)
    scored = {
        _sort_and_score(with_counts.translate(str.maketrans(perm)))
        for perm in _relabelings()[spacegroup]
    }
    canonical = min(scored, key=lambda s: (s[1], s[0]))[0]
    return (canonical, *sorted({s for s, _ in scored} - {canonical}))


def _aflow_pearson(pearson: str) -> str:
    """AFLOW's Pearson symbols write base-centred lattices as C (moyopy writes oS, ITA's side-centred)."""
    return pearson[0] + "C" + pearson[2:] if len(pearson) > 1 and pearson[1] in "ABS" else pearson


def canonical_protostructure(label: str) -> str:
    """The canonical form of a label: Wyckoff letters of the lowest-scoring equivalent setting
    (pymatgen's ``canonicalize_element_wyckoffs``) and ``oC`` for base-centred lattices, so that
    labels from moyopy and spglib, or from before and after an origin shift, compare equal."""
    parsed = _parse_label(label)
    canonical = _wyckoff_orbit("_".join(parsed.element_wyckoffs), parsed.spacegroup)[0]
    return (
        f"{parsed.formula}_{_aflow_pearson(parsed.pearson)}_{parsed.spacegroup}_{canonical}:{parsed.chemical_system}"
    )


def equivalent_protostructures(label: str) -> list[str]:
    """The equivalent Wyckoff representations of a label under pymatgen's relabelling tables (the
    affine normaliser's choices of origin and setting, thesis tables 6.4-6.5; what Wren augments
    over).  Canonical form first (it is always among them), the others sorted; Pearson symbols in the
    canonical ``oC`` spelling."""
    parsed = _parse_label(label)
    head = f"{parsed.formula}_{_aflow_pearson(parsed.pearson)}_{parsed.spacegroup}_"
    orbit = _wyckoff_orbit("_".join(parsed.element_wyckoffs), parsed.spacegroup)
    return [f"{head}{wyckoffs}:{parsed.chemical_system}" for wyckoffs in orbit]


def count_wyckoff_positions(label: str) -> int:
    """Number of Wyckoff positions (occupied orbits) in a label (pymatgen's function of the same name)."""
    parsed = _parse_label(label)
    return sum(n for part in parsed.element_wyckoffs for n, _ in _counts_and_letters(part))


def count_crystal_sites(label: str) -> int:
    """Number of sites in the conventional cell of a label (pymatgen's function of the same name)."""
    parsed = _parse_label(label)
    table = _multiplicities()[parsed.spacegroup]
    return sum(n * table[w] for part in parsed.element_wyckoffs for n, w in _counts_and_letters(part))


def relaxation_changed_representation(initial_label: str | None, relaxed_label: str | None) -> bool:
    """Whether relaxation changed the Wyckoff representation: the canonical forms differ.  A missing
    label on either side (symmetry search failed) counts as changed, since the representation
    cannot be confirmed."""
    if initial_label is None or relaxed_label is None:
        return True
    return canonical_protostructure(initial_label) != canonical_protostructure(relaxed_label)


def to_aflow_convention(label: str) -> str:
    """The prototype part of a label as the AFLOW prototype encyclopedia writes it: canonical Wyckoff
    letters, ``oC`` for base-centred lattices and, for rhombohedral (``hR``) lattices, the number of
    atoms in the primitive rhombohedral cell (pymatgen counts the hexagonal conventional cell, 3x as
    many: alpha-Hg is ``A_hR1_166_a`` in AFLOW, ``A_hR3_166_a`` in pymatgen).  Accepts labels with or
    without the ``:chemical system`` suffix."""
    prototype = label.split(":")[0]
    formula, pearson, spacegroup, *element_wyckoffs = prototype.split("_")
    pearson = _aflow_pearson(pearson)
    if pearson.startswith("hR"):
        pearson = f"hR{int(pearson[2:]) // 3}"
    canonical = _wyckoff_orbit("_".join(element_wyckoffs), int(spacegroup))[0]
    return f"{formula}_{pearson}_{spacegroup}_{canonical}"


AflowAgreement = Literal["exact", "equivalent", "same_spacegroup", "different_spacegroup"]


def compare_to_aflow_label(label: str, aflow_label: str) -> AflowAgreement:
    """How a computed (pymatgen-format) label agrees with a label written by AFLOW (e.g. the tags of
    the AFLOW prototype library):

    - ``exact``: the prototype part in AFLOW's conventions (``to_aflow_convention``) equals it;
    - ``equivalent``: equal once AFLOW's Wyckoff letters are canonicalised too (AFLOW chose another
      origin or setting among those in pymatgen's relabelling tables);
    - ``same_spacegroup``: same space group, other Wyckoff letters (e.g. another cell choice of a
      triclinic or monoclinic cell, which the tables do not cover) or another Pearson count;
    - ``different_spacegroup``: the symmetry search found another space group (at 0.1 A usually a
      supergroup of a slightly distorted prototype).
    """
    ours = to_aflow_convention(label)
    theirs = aflow_label.split(":")[0]
    if ours == theirs:
        return "exact"
    formula, pearson, spacegroup, *element_wyckoffs = theirs.split("_")
    theirs_canonical = "_".join(
        (formula, pearson, spacegroup, _wyckoff_orbit("_".join(element_wyckoffs), int(spacegroup))[0])
    )
    if ours == theirs_canonical:
        return "equivalent"
    if ours.split("_")[2] == spacegroup:
        return "same_spacegroup"
    return "different_spacegroup"


# --------------------------------------------------------------------------------------------
# symmetry backends on an element-only cell


class _DropMoyoSupercellNotice(logging.Filter):
    """moyopy logs a warning for every supercell input ("Omitted N primitive-cell symmetry operations
    ... The returned orbits use primitive-cell symmetry"): primitive-cell orbits are what a Wyckoff
    representation needs, so the notice is noise here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "primitive-cell symmetry operations" not in record.getMessage()


logging.getLogger("moyo").addFilter(_DropMoyoSupercellNotice())


class ProtostructureInputError(ValueError):
    """A structure that has no Wyckoff representation (disordered sites, no sites)."""


_DISORDERED = "disordered structure: a Wyckoff representation needs one element per site"


@dataclass(frozen=True)
class _Rejected:
    """An input that gets an error row without a symmetry search, and what is known of its cell."""

    error: str
    n_sites: int | None = None
    volume_a3: float | None = None


@dataclass(frozen=True)
class _Cell:
    """What the symmetry search needs: lattice rows (A), fractional coordinates, element per site."""

    lattice: np.ndarray
    frac_coords: np.ndarray
    symbols: tuple[str, ...]


def _cell_from_structure(structure: Structure) -> _Cell:
    from pymatgen.core import IStructure, Structure

    if not isinstance(structure, (Structure, IStructure)):
        raise TypeError(f"expected a pymatgen Structure, got {type(structure).__name__}")
    if len(structure) == 0:
        raise ProtostructureInputError("structure has no sites")
    if not structure.is_ordered:
        raise ProtostructureInputError(_DISORDERED)
    return _Cell(
        lattice=np.array(structure.lattice.matrix, dtype=np.float64),
        frac_coords=np.array(structure.frac_coords, dtype=np.float64),
        symbols=tuple(site.specie.symbol for site in structure),
    )


def structure_from_json(lattice: Any, species: Any, frac_coords: Any) -> Structure:
    """A pymatgen Structure from the JSON columns of a ``structure`` row (lattice rows, species, fractional)."""
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice(_json(lattice)), _json(species), _json(frac_coords))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# The element symbols pymatgen's Element knows, H..Og: a site given as one of these (or as {symbol: 1.0}) reads
# the same without pymatgen.  Anything else (oxidation states "Fe2+", isotopes "D", zero or negative amounts)
# goes through pymatgen, so that its reading and its errors stay the reference.
_ELEMENT_SYMBOLS = frozenset("""
    H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr Rb Sr Y Zr
    Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt
    Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc
    Lv Ts Og""".split())
_PYMATGEN_AMOUNT_TOLERANCE = 1e-8  # pymatgen's Composition.amount_tolerance: smaller amounts are dropped


def _plain_cell(lattice: Any, species: Any, frac_coords: Any) -> _Cell | _Rejected | None:
    """What ``_prepare(structure_from_json(...))`` gives, read without pymatgen (~50x faster).

    A ``_Cell``, the rejection of a disordered structure, or None for a row only pymatgen should read (see
    ``_ELEMENT_SYMBOLS``), including malformed ones, whose pymatgen error is the one to keep.
    """
    species = _json(species)
    if not isinstance(species, list) or not species:
        return None
    symbols: list[str] = []
    ordered = True
    for site in species:
        if isinstance(site, str):
            if site not in _ELEMENT_SYMBOLS:
                return None
            symbols.append(site)
            continue
        if not isinstance(site, dict) or not site:
            return None
        for element, amount in site.items():
            if element not in _ELEMENT_SYMBOLS or type(amount) not in (int, float):
                return None
            if not amount >= _PYMATGEN_AMOUNT_TOLERANCE:  # also NaN
                return None
        if sum(site.values()) > 1:  # pymatgen refuses more than 1 (+ its tolerance): let it say so
            return None
        if len(site) == 1 and next(iter(site.values())) == 1:  # pymatgen's Site.is_ordered
            symbols.append(next(iter(site)))
        else:
            ordered = False
    try:
        matrix = np.array(_json(lattice), dtype=np.float64)
        coords = np.array(_json(frac_coords), dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if matrix.shape != (3, 3) or coords.shape != (len(species), 3):
        return None
    if not ordered:  # pymatgen's Lattice.volume, to the last bit
        volume = float(abs(np.dot(np.cross(matrix[0], matrix[1]), matrix[2])))
        return _Rejected(f"ProtostructureInputError: {_DISORDERED}", len(species), volume / len(species))
    return _Cell(lattice=matrix, frac_coords=coords, symbols=tuple(symbols))


def _prepare(structure: Structure) -> _Cell | _Rejected:
    """The cell to search, or the rejection of a structure without a Wyckoff representation."""
    try:
        return _cell_from_structure(structure)
    except Exception as exc:  # noqa: BLE001 - bad input is a recorded row
        rejected = _Rejected(f"{type(exc).__name__}: {exc}")
        try:
            return _Rejected(rejected.error, len(structure), structure.volume / len(structure))
        except Exception:  # noqa: BLE001
            return rejected


def _prepare_json(lattice: Any, species: Any, frac_coords: Any) -> _Cell | _Rejected:
    cell = _plain_cell(lattice, species, frac_coords)
    return cell if cell is not None else _prepare(structure_from_json(lattice, species, frac_coords))


@dataclass(frozen=True)
class _Symmetry:
    spacegroup: int
    pearson: str
    orbits: Sequence[int]  # per site, the index of its orbit's representative site
    wyckoffs: Sequence[str]  # per site, the Wyckoff letter (maybe with the multiplicity in front)


def _type_numbers(symbols: Sequence[str]) -> list[int]:
    index = {s: i + 1 for i, s in enumerate(sorted(set(symbols)))}
    return [index[s] for s in symbols]


def _moyopy_symmetry(cell: _Cell, symprec: float, angle_tolerance: float | None) -> _Symmetry:
    import moyopy

    moyo_cell = moyopy.Cell(cell.lattice.tolist(), cell.frac_coords.tolist(), _type_numbers(cell.symbols))
    angle = math.radians(angle_tolerance) if angle_tolerance is not None else None  # moyopy takes radians
    data = moyopy.MoyoDataset(moyo_cell, symprec=symprec, angle_tolerance=angle)
    return _Symmetry(data.number, data.pearson_symbol, data.orbits, data.wyckoffs)


_CRYSTAL_FAMILY_BOUNDS = ((2, "a"), (15, "m"), (74, "o"), (142, "t"), (194, "h"), (230, "c"))


def _crystal_family(spacegroup: int) -> str:
    return next(letter for last, letter in _CRYSTAL_FAMILY_BOUNDS if spacegroup <= last)


def _spglib_symmetry(cell: _Cell, symprec: float, angle_tolerance: float | None) -> _Symmetry:
    import spglib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # spglib's deprecation notices
        data = spglib.get_symmetry_dataset(
            (cell.lattice, cell.frac_coords, _type_numbers(cell.symbols)),
            symprec=symprec,
            angle_tolerance=angle_tolerance if angle_tolerance is not None else -1.0,
        )
    if data is None:
        raise RuntimeError(f"spglib found no symmetry: {spglib.get_error_message()}")
    # As pymatgen's SpacegroupAnalyzer.get_pearson_symbol: A/B/C/S-centred lattices are written C.
    centring = "C" if data.international[0] in "ABCS" else data.international[0]
    pearson = f"{_crystal_family(data.number)}{centring}{len(data.std_types)}"
    # Orbits under the primitive cell's symmetry, as moyopy's: ``equivalent_atoms`` (what pymatgen's
    # SpacegroupAnalyzer uses) only knows the operations of the input cell, so a supercell splits an orbit
    # into several and the multiplicities no longer add up (pymatgen then retries on the refined cell).
    return _Symmetry(data.number, pearson, data.crystallographic_orbits, data.wyckoffs)


_SYMMETRY = {"moyopy": _moyopy_symmetry, "spglib": _spglib_symmetry}


def _prototype_formula(counts: dict[str, int]) -> str:
    """pymatgen's ``get_prototype_formula_from_composition`` for integer site counts."""
    elements = sorted(counts)
    divisor = math.gcd(*(counts[e] for e in elements))
    return "".join(
        f"{letter}{'' if counts[e] // divisor == 1 else counts[e] // divisor}"
        for letter, e in zip(ascii_uppercase, elements)
    )


def _reduced(counts: dict[str, int]) -> tuple[tuple[str, int], ...]:
    divisor = math.gcd(*counts.values())
    return tuple(sorted((e, n // divisor) for e, n in counts.items()))


def _label_from_symmetry(symbols: Sequence[str], symmetry: _Symmetry) -> tuple[str, bool]:
    """The label as pymatgen builds it, and whether the Wyckoff multiplicities give the composition."""
    representatives: dict[int, tuple[str, str]] = {}
    for site, orbit in enumerate(symmetry.orbits):
        if orbit not in representatives:
            representatives[orbit] = (symbols[orbit], symmetry.wyckoffs[orbit].lstrip("0123456789"))
    multiplicity = _multiplicities()[symmetry.spacegroup]
    wyckoff_counts: dict[str, int] = {}
    parts = []
    for element, group in groupby(sorted(representatives.values()), key=lambda p: p[0]):
        letters = [w for _, w in group]
        wyckoff_counts[element] = sum(multiplicity[w] for w in letters)
        parts.append("".join(f"{len(list(same))}{w}" for w, same in groupby(letters)))
    site_counts: dict[str, int] = {}
    for s in symbols:
        site_counts[s] = site_counts.get(s, 0) + 1
    canonical = _wyckoff_orbit("_".join(parts), symmetry.spacegroup)[0]
    label = (
        f"{_prototype_formula(site_counts)}_{symmetry.pearson}_{symmetry.spacegroup}_{canonical}"
        f":{'-'.join(sorted(site_counts))}"
    )
    return label, _reduced(wyckoff_counts) == _reduced(site_counts)


def _check_arguments(backend: str, symprec: float, angle_tolerance: AngleTolerance) -> float | None:
    """Validate the arguments; return the angle tolerance to use (degrees or None)."""
    if backend not in _SYMMETRY:
        raise ValueError(f"unknown symmetry backend {backend!r}; choose one of {BACKENDS}")
    if not symprec > 0:
        raise ValueError(f"symprec must be a positive distance in Angstrom, got {symprec!r}")
    if angle_tolerance == "auto":
        return DEFAULT_ANGLE_TOLERANCE[backend]
    if angle_tolerance is not None and not (isinstance(angle_tolerance, (int, float)) and angle_tolerance > 0):
        raise ValueError(f"angle_tolerance must be positive (degrees), None or 'auto', got {angle_tolerance!r}")
    return None if angle_tolerance is None else float(angle_tolerance)


def _empty_row(backend: str, symprec: float, angle_tolerance: float | None) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(_ROW_FIELDS)
    versions = _versions()
    row.update(
        is_valid=False,
        backend=backend,
        backend_version=versions[backend],
        pymatgen_version=versions["pymatgen"],
        symprec=float(symprec),
        angle_tolerance=None if angle_tolerance is None else float(angle_tolerance),
    )
    return row


def _row_from_cell(cell: _Cell, backend: str, symprec: float, angle_tolerance: float | None) -> dict[str, Any]:
    row = _empty_row(backend, symprec, angle_tolerance)
    n_sites = len(cell.symbols)
    volume_per_site = abs(float(np.linalg.det(cell.lattice))) / n_sites
    row.update(
        n_sites=n_sites,
        volume_per_site_a3=volume_per_site,
        flag_lt64_sites=n_sites < MAX_SITES,
        flag_volume_lt500=volume_per_site < MAX_VOLUME_PER_SITE_A3,
    )
    try:
        symmetry = _SYMMETRY[backend](cell, symprec, angle_tolerance)
        label, is_valid = _label_from_symmetry(cell.symbols, symmetry)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - a failed search is a recorded row (moyopy panics are BaseException)
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row
    parsed = _parse_label(label)
    n_wyckoff = count_wyckoff_positions(label)
    row.update(
        protostructure=label,
        prototype=parsed.prototype,
        chemical_system=parsed.chemical_system,
        spacegroup_number=parsed.spacegroup,
        pearson_symbol=parsed.pearson,
        wyckoff_letters="_".join(parsed.element_wyckoffs),
        n_wyckoff_positions=n_wyckoff,
        n_sites_conventional=count_crystal_sites(label),
        is_valid=is_valid,
        flag_lt16_wyckoff=n_wyckoff < MAX_WYCKOFF_POSITIONS,
        canonical_protostructure=canonical_protostructure(label),
        n_equivalent=len(_wyckoff_orbit("_".join(parsed.element_wyckoffs), parsed.spacegroup)),
    )
    return row


def protostructure_row(
    structure: Structure,
    *,
    backend: Backend = DEFAULT_BACKEND,
    symprec: float = DEFAULT_SYMPREC,
    angle_tolerance: AngleTolerance = "auto",
) -> dict[str, Any]:
    """The Wyckoff representation of one structure as a flat dict (the fields of
    ``PROTOSTRUCTURE_SCHEMA`` except ``structure_id`` and ``elapsed_s``).

    ``symprec`` is in Angstrom, ``angle_tolerance`` in degrees (None: the backend's own criterion;
    "auto": 5 for spglib, None for moyopy, see the module docstring).  A
    structure without a representation (disordered, no sites) or a failed symmetry search gives a row
    with ``error`` set and the label fields null; an invalid representation (multiplicities that do
    not add up to the composition) keeps its label with ``is_valid=False``.  Runs in-process with no
    time limit: use ``build_protostructure_table`` for data that may contain pathological cells.
    """
    angle_tolerance = _check_arguments(backend, symprec, angle_tolerance)
    try:
        cell = _cell_from_structure(structure)
    except ProtostructureInputError as exc:
        row = _empty_row(backend, symprec, angle_tolerance)
        row["error"] = f"{type(exc).__name__}: {exc}"
        if len(structure):
            row.update(n_sites=len(structure), volume_per_site_a3=structure.volume / len(structure))
        return row
    return _row_from_cell(cell, backend, symprec, angle_tolerance)


# --------------------------------------------------------------------------------------------
# tables, with a per-structure time limit enforced by a killable worker process


class _Worker:
    """A subprocess that computes rows for chunks of cells, one message back per cell."""

    STARTUP_TIMEOUT_S = 120.0

    def __init__(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        code = (
            "import sys; from matlake.featurestore.protostructure import _worker_main; "
            "_worker_main(int(sys.argv[1]), int(sys.argv[2]))"
        )
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code, str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env={**os.environ, "SPGLIB_WARNING": "OFF"},  # else spglib's C code prints to stderr
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._send = Connection(to_child_w, readable=False)
        self._receive = Connection(from_child_r, writable=False)
        if not self._receive.poll(self.STARTUP_TIMEOUT_S):
            self.kill()
            raise RuntimeError(f"protostructure worker did not start within {self.STARTUP_TIMEOUT_S:.0f} s")
        try:
            self._receive.recv()  # ("ready", pid)
        except EOFError:
            code = self.process.wait()
            self.kill()
            raise RuntimeError(f"protostructure worker exited while starting (exit code {code})") from None

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, message: Any) -> None:
        self._send.send(message)

    def receive(self, timeout_s: float) -> tuple[str, Any]:
        """("ok", message), ("timeout", None) or ("died", exit code)."""
        if not self._receive.poll(timeout_s):
            return "timeout", None
        try:
            return "ok", self._receive.recv()
        except (EOFError, OSError):
            try:
                code = self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            return "died", code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.close_pipes()

    def close_pipes(self) -> None:
        for conn in (self._send, self._receive):
            conn.close()


def _worker_main(read_fd: int, write_fd: int) -> None:
    """Worker process loop: receive (params, [(position, (lattice, frac_coords, symbols)), ...]) and send
    (position, row, seconds) for each.  Plain tuples, so that unpickling needs no class from the parent."""
    warnings.simplefilter("ignore")
    inbox = Connection(read_fd, writable=False)
    outbox = Connection(write_fd, readable=False)
    _multiplicities(), _relabelings(), _versions()  # before "ready": not charged to the first structure
    import moyopy  # noqa: F401
    import spglib  # noqa: F401

    outbox.send(("ready", os.getpid()))
    while True:
        try:
            params, jobs = inbox.recv()
        except EOFError:  # the parent closed the pipe or exited
            return
        for position, (lattice, frac_coords, symbols) in jobs:
            start = time.perf_counter()
            row = _row_from_cell(_Cell(lattice, frac_coords, symbols), **params)
            outbox.send((position, row, time.perf_counter() - start))


class _WorkerPool:
    """Started workers kept for reuse between calls (one per concurrent caller)."""

    MAX_IDLE = 4

    def __init__(self) -> None:
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()

    def acquire(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                worker.kill()
        return _Worker()

    def release(self, worker: _Worker) -> None:
        with self._lock:
            if worker.alive() and len(self._idle) < self.MAX_IDLE:
                self._idle.append(worker)
                return
        worker.kill()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()

    def forget_after_fork(self) -> None:
        """In a forked child the idle workers are the parent's: drop our copies of their pipes."""
        self._lock = threading.Lock()
        idle, self._idle = self._idle, []
        for worker in idle:
            worker.close_pipes()


_POOL = _WorkerPool()
atexit.register(_POOL.close)
os.register_at_fork(after_in_child=_POOL.forget_after_fork)


def _rows_with_time_limit(
    jobs: list[tuple[int, _Cell]], params: dict[str, Any], time_limit_s: float
) -> dict[int, tuple[dict[str, Any], float]]:
    """Rows for one chunk, by position.  Each structure may take ``time_limit_s`` (from the previous
    structure's result); one that runs over or kills the worker gets an error row, and the rest of
    the chunk goes to a fresh worker."""
    results: dict[int, tuple[dict[str, Any], float]] = {}
    remaining = jobs
    failed_sends = 0
    while remaining:
        worker = _POOL.acquire()
        try:
            try:
                worker.send((params, [(p, (c.lattice, c.frac_coords, c.symbols)) for p, c in remaining]))
            except OSError as exc:  # BrokenPipeError: died while idle, not this chunk's fault
                worker.kill()
                failed_sends += 1
                if failed_sends >= 3:
                    raise RuntimeError("protostructure workers keep dying before they read their work") from exc
                continue
            done = 0
            failure: str | None = None
            for position, _ in remaining:
                status, message = worker.receive(time_limit_s)
                if status == "ok":
                    got, row, seconds = message
                    if got != position:
                        raise RuntimeError(f"protostructure worker answered for {got}, expected {position}")
                    results[position] = (row, seconds)
                    done += 1
                    continue
                if status == "timeout":
                    failure = f"TimeoutError: symmetry search ran past the time limit of {time_limit_s:g} s"
                else:
                    failure = f"WorkerCrashed: the symmetry-search process exited (code {message})"
                row = _empty_row(**params)
                cell = remaining[done][1]
                n_sites = len(cell.symbols)
                volume_per_site = abs(float(np.linalg.det(cell.lattice))) / n_sites
                row.update(
                    error=failure,
                    n_sites=n_sites,
                    volume_per_site_a3=volume_per_site,
                    flag_lt64_sites=n_sites < MAX_SITES,
                    flag_volume_lt500=volume_per_site < MAX_VOLUME_PER_SITE_A3,
                )
                results[position] = (row, time_limit_s if status == "timeout" else float("nan"))
                break
        except BaseException:
            worker.kill()  # state unknown (e.g. KeyboardInterrupt mid-chunk)
            raise
        if failure is None:
            _POOL.release(worker)
            remaining = []
        else:
            worker.kill()
            remaining = remaining[done + 1 :]
    return results


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def build_protostructure_table(
    items: Iterable[tuple[int, Structure]],
    *,
    backend: Backend = DEFAULT_BACKEND,
    symprec: float = DEFAULT_SYMPREC,
    angle_tolerance: AngleTolerance = "auto",
    time_limit_s: float | None = 10.0,
    chunk_size: int = 256,
) -> pa.Table:
    """One ``PROTOSTRUCTURE_SCHEMA`` row per ``(structure_id, structure)``, in input order.

    Failures (disordered structures, failed searches, time-outs, crashed searches) are rows with
    ``error`` set, never exceptions.  With ``time_limit_s`` the symmetry search runs in a reused
    worker process, ``chunk_size`` structures per message; ``time_limit_s=None`` runs in-process with
    no limit (only for trusted data).
    """
    prepared = ((structure_id, _prepare(structure)) for structure_id, structure in items)
    return _build_table(prepared, backend, symprec, angle_tolerance, time_limit_s, chunk_size)


def build_protostructure_table_from_json(
    rows: Iterable[tuple[int, Any, Any, Any]],
    *,
    backend: Backend = DEFAULT_BACKEND,
    symprec: float = DEFAULT_SYMPREC,
    angle_tolerance: AngleTolerance = "auto",
    time_limit_s: float | None = 10.0,
    chunk_size: int = 256,
) -> pa.Table:
    """``build_protostructure_table`` of ``(structure_id, lattice, species, frac_coords)`` as the ``structure``
    table stores them (JSON text or decoded), equal to it on ``structure_from_json`` of each row.

    Rows of plain element symbols (or ``{symbol: occupancy}``) are read without building pymatgen objects,
    which cost more than the symmetry search itself; the rest go through pymatgen.
    """
    prepared = ((row[0], _prepare_json(*row[1:4])) for row in rows)
    return _build_table(prepared, backend, symprec, angle_tolerance, time_limit_s, chunk_size)


def protostructure_chunk(rows: Sequence[tuple]) -> pa.Table:
    """The feature store's chunk function (defaults of ``build_protostructure_table``).  It lives in this light
    module so that Dask workers unpickling it import numpy and pyarrow, not pymatgen or SQLAlchemy."""
    return build_protostructure_table_from_json(rows)


def _build_table(
    prepared: Iterable[tuple[int, _Cell | _Rejected]],
    backend: Backend,
    symprec: float,
    angle_tolerance: AngleTolerance,
    time_limit_s: float | None,
    chunk_size: int,
) -> pa.Table:
    angle_tolerance = _check_arguments(backend, symprec, angle_tolerance)
    if time_limit_s is not None and not time_limit_s > 0:
        raise ValueError(f"time_limit_s must be positive or None, got {time_limit_s!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size!r}")
    params = {"backend": backend, "symprec": symprec, "angle_tolerance": angle_tolerance}
    ids: list[int] = []
    rows: list[dict[str, Any]] = []
    for chunk in _chunks(prepared, chunk_size):
        jobs: list[tuple[int, _Cell]] = []
        chunk_rows: list[dict[str, Any] | None] = []
        for structure_id, cell in chunk:
            ids.append(structure_id)
            if isinstance(cell, _Cell):
                jobs.append((len(chunk_rows), cell))
                chunk_rows.append(None)
                continue
            row = _empty_row(backend, symprec, angle_tolerance)
            row.update(error=cell.error, elapsed_s=0.0)
            if cell.n_sites is not None:
                row.update(n_sites=cell.n_sites, volume_per_site_a3=cell.volume_a3)
            chunk_rows.append(row)
        if time_limit_s is None:
            computed = {}
            for position, cell in jobs:
                start = time.perf_counter()
                computed[position] = (_row_from_cell(cell, **params), time.perf_counter() - start)
        else:
            computed = _rows_with_time_limit(jobs, params, time_limit_s) if jobs else {}
        for position, (row, seconds) in computed.items():
            row["elapsed_s"] = seconds
            chunk_rows[position] = row
        rows.extend(chunk_rows)  # type: ignore[arg-type]
    columns = [pa.array(ids, pa.int64())]  # column by column: ~8x faster than Table.from_pylist
    columns += [pa.array([row[f.name] for row in rows], f.type) for f in list(PROTOSTRUCTURE_SCHEMA)[1:]]
    return pa.Table.from_arrays(columns, schema=PROTOSTRUCTURE_SCHEMA)


# --------------------------------------------------------------------------------------------
# the thesis' cleaning steps (tables 6.1-6.3)


Energies = Sequence[float] | np.ndarray | pa.Array | pa.ChunkedArray | str | None


def _energies_array(table: pa.Table, energies: Energies) -> np.ndarray | None:
    if energies is None:
        return None
    if isinstance(energies, str):
        if energies not in table.column_names:
            raise KeyError(f"no energy column {energies!r} in the table (columns: {table.column_names})")
        energies = table.column(energies)
    if isinstance(energies, (pa.Array, pa.ChunkedArray)):
        values = np.asarray(energies.to_numpy(zero_copy_only=False), dtype=np.float64)
    else:
        values = np.asarray(energies, dtype=np.float64)
    if values.shape != (table.num_rows,):
        raise ValueError(f"need one energy per row: got {values.shape[0]} for {table.num_rows} rows")
    return values


def _cleaning_steps(table: pa.Table, energies: Energies) -> list[tuple[str, np.ndarray]]:
    """(step name, boolean mask of the rows kept after it), cumulatively, in the thesis' order."""
    n = table.num_rows
    energy = _energies_array(table, energies)
    backends = sorted({b for b in table.column("backend").to_pylist() if b is not None}) or [DEFAULT_BACKEND]
    steps: list[tuple[str, np.ndarray]] = [("Full Data Set", np.ones(n, dtype=bool))]

    valid = np.asarray(table.column("is_valid").fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    valid &= np.asarray(table.column("error").is_null().to_numpy(zero_copy_only=False), dtype=bool)
    steps.append((f"Valid Wyckoff Representation from {'/'.join(backends)}", valid))

    # Keep one row per canonical protostructure: the lowest energy (ties and missing energies: the first).
    kept = valid.copy()
    rows = np.flatnonzero(valid)
    if rows.size:
        canonical = table.column("canonical_protostructure").take(pa.array(rows)).combine_chunks()
        keys = canonical.dictionary_encode().indices.to_numpy()
        order_energy = np.zeros(rows.size) if energy is None else np.nan_to_num(energy[rows], nan=np.inf)
        order = np.lexsort((rows, order_energy, keys))  # by key, then energy, then row order
        first = np.ones(rows.size, dtype=bool)
        first[1:] = keys[order][1:] != keys[order][:-1]
        kept[:] = False
        kept[rows[order[first]]] = True
    name = (
        "Lowest Energy Canonical Representations"
        if energy is not None
        else "Distinct Canonical Representations (no energies given: first row kept)"
    )
    steps.append((name, kept))

    def flag(column: str) -> np.ndarray:
        return np.asarray(table.column(column).fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)

    steps.append((f"Less than {MAX_WYCKOFF_POSITIONS} Wyckoff Positions", kept & flag("flag_lt16_wyckoff")))
    steps.append((f"Less than {MAX_SITES} sites in Crystal Structure", steps[-1][1] & flag("flag_lt64_sites")))
    steps.append(
        (f"Volume per site less than {MAX_VOLUME_PER_SITE_A3:g} Å³", steps[-1][1] & flag("flag_volume_lt500"))
    )
    return steps


def cleaning_report(table: pa.Table, energies: Energies = None) -> list[tuple[str, int]]:
    """Counts after each cleaning step of the thesis' tables 6.1-6.3, with their wording:
    Full Data Set -> Valid Wyckoff Representation from <backend> -> Lowest Energy Canonical
    Representations -> Less than 16 Wyckoff Positions -> Less than 64 sites in Crystal Structure ->
    Volume per site less than 500 Å³ (MP: 139,367 -> 138,927 -> 128,904 -> 108,378 -> 104,791 -> 104,610).

    ``energies``: one per row (eV/atom, or any per-atom or per-formula-unit energy: rows that share a
    canonical protostructure share a composition), as a sequence or the name of a column of
    ``table``.  Without energies the de-duplication keeps the first row of each canonical
    protostructure and the step says so.
    """
    return [(name, int(mask.sum())) for name, mask in _cleaning_steps(table, energies)]


def clean_protostructure_table(table: pa.Table, energies: Energies = None) -> pa.Table:
    """The rows that survive every step of ``cleaning_report`` (same arguments)."""
    return table.filter(pa.array(_cleaning_steps(table, energies)[-1][1]))


# --------------------------------------------------------------------------------------------
# reference data


def load_aflow_prototypes() -> list[tuple[str, Structure]]:
    """The 288 prototype structures shipped with pymatgen, as (AFLOW label, structure).  Read straight
    from ``aflow_prototypes.json.gz`` (0.2 s) instead of through ``pymatgen.analysis.prototypes``
    (whose import decodes them as StructureNL objects, 7-10 s)."""
    from pymatgen.core import Structure

    with gzip.open(_pymatgen_prototypes_dir() / "aflow_prototypes.json.gz", "rt") as f:
        entries = json.load(f)
    return [(entry["tags"]["aflow"], Structure.from_dict(entry["snl"])) for entry in entries]
