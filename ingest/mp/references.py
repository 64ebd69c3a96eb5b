"""Elemental reference energies: the reference file beside an entries file, and formation energies from it.

e_form = (E - sum_i n_i e_ref_i) / N, with E the (corrected) energy of the cell.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pymatgen.entries.computed_entries import ComputedEntry

from matlake.errors import InputError

from ..files import open_text
from ..records import RecordRejected
from .datasets import file_stamp
from .values import ELEMENT_SYMBOLS

REFERENCE_GLOB = "*elemental*ref*.json*"


@dataclass(frozen=True, slots=True)
class ReferenceSet:
    """Elemental reference energies (eV/atom) with the ids they came from and a label naming the file."""

    energies: dict[str, float]
    entry_ids: dict[str, str]
    label: str


def find_reference_file(folder: Path) -> Path | None:
    """The elemental reference file beside an entries file (the last by name when several, e.g. newest date)."""
    found = sorted(p for p in Path(folder).glob(REFERENCE_GLOB) if p.is_file())
    return found[-1] if found else None


def references_beside(path: Path) -> ReferenceSet | None:
    """The reference set of the folder ``path`` is in, or None; an unusable reference file rejects ``path``."""
    ref_file = find_reference_file(Path(path).parent)
    if ref_file is None:
        return None
    try:
        return load_references(ref_file)
    except (InputError, OSError, EOFError, ValueError) as exc:
        raise RecordRejected("unreadable_references", f"elemental references {ref_file.name}: {exc}") from None


def load_references(path: Path) -> ReferenceSet:
    """Element -> ComputedEntry JSON as reference energies per atom (corrected energy, as stored)."""
    path = Path(path)
    return _load_references(path, *file_stamp(path))


@lru_cache(maxsize=8)
def _load_references(path: Path, mtime_ns: int, size: int) -> ReferenceSet:
    with open_text(path) as fh:
        raw = json.load(fh)
    if not isinstance(raw, Mapping):
        raise InputError(f"{path}: elemental references must be a JSON object element -> ComputedEntry")
    energies, ids = {}, {}
    for element, entry in raw.items():
        if element not in ELEMENT_SYMBOLS or not isinstance(entry, Mapping):
            continue
        try:
            ce = ComputedEntry.from_dict(dict(entry))
        except Exception:  # a broken reference leaves that element without one
            continue
        if len(ce.composition.elements) != 1 or not math.isfinite(ce.energy_per_atom):
            continue
        energies[element] = float(ce.energy_per_atom)
        ids[element] = str(ce.entry_id)
    return ReferenceSet(energies, ids, f"MP elemental reference entries ({path.name})")


def formation_energy_per_atom(amounts: Mapping[str, float], energy_ev: float,
                              refs: ReferenceSet) -> tuple[float | None, list[str]]:
    """(e_form per atom, elements without a reference): (E - sum_i n_i e_ref_i) / N."""
    missing = sorted(el for el in amounts if el not in refs.energies)
    if missing:
        return None, missing
    n_atoms = math.fsum(amounts.values())
    reference = math.fsum(n * refs.energies[el] for el, n in amounts.items())
    return (energy_ev - reference) / n_atoms, []
