"""The MP datasets and how a file is recognised as one: from its first bytes, and its name for matbench CSVs."""

from __future__ import annotations

import csv
import re
from functools import lru_cache
from pathlib import Path

from matlake.errors import InputError

from ..files import open_text

ENTRIES = "entries"
ELEMENTAL_REFERENCES = "elemental_references"
TASKS = "tasks"
SUMMARY = "summary"
ROOST_FORMATION_ENERGY = "roost_formation_energy"
ROOST_BAND_GAP = "roost_band_gap"
CGCNN_FORMATION_ENERGY = "cgcnn_formation_energy"
MATBENCH_MP_E_FORM = "matbench_mp_e_form"
MATBENCH_MP_GAP = "matbench_mp_gap"
MATBENCH_PHONONS = "matbench_phonons"

SNIFF_CHARS = 1 << 20


def dataset(path: Path) -> str:
    """Which MP record stream ``path`` holds, judged from its first bytes (and its name for matbench CSVs)."""
    return _sniff(Path(path), *file_stamp(Path(path)))


def file_stamp(path: Path) -> tuple[int, int]:
    """(mtime in ns, size) of a file, the key of the per-file caches; an unreadable path is an InputError."""
    try:
        st = path.stat()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    return st.st_mtime_ns, st.st_size


@lru_cache(maxsize=256)
def _sniff(path: Path, mtime_ns: int, size: int) -> str:
    head = sniff_head(path)
    stripped = head.lstrip()
    if not stripped:
        raise InputError(f"{path} is empty")
    if stripped[0] not in "[{":
        return _csv_dataset(path, head)
    if any(marker in head for marker in ('"calcs_reversed"', '"orig_inputs"', '"ionic_steps"')):
        return TASKS
    if re.match(r'\{\s*"(index|columns|data)"\s*:', stripped) and '"columns"' in head and '"index"' in head:
        if "phdos" in head or "phonon" in head:
            return MATBENCH_PHONONS
        raise InputError(f"{path}: a pandas 'split' JSON table, but not matbench_phonons (columns: no phdos peak)")
    if re.search(r'"@class"\s*:\s*"Computed(Structure)?Entry"', head):
        return ENTRIES if stripped[0] == "[" else ELEMENTAL_REFERENCES
    if '"material_id"' in head:
        return SUMMARY
    raise InputError(f"{path}: not a Materials Project format this ingester knows (entries, tasks, summary, "
                     "matbench JSON or the CSV sets)")


def sniff_head(path: Path, chars: int = SNIFF_CHARS) -> str:
    """The first ``chars`` characters of a (possibly compressed) text file; undecodable files are an InputError."""
    try:
        with open_text(path) as fh:
            return fh.read(chars)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the start of {path}: {type(exc).__name__}: {exc}") from None


def _csv_dataset(path: Path, head: str) -> str:
    header = [c.strip().lower() for c in next(csv.reader([first_line(head)]), [])]
    columns = set(header)
    if {"formula", "target"} <= columns and len(header) == 2:
        name = path.name.lower()
        if "gap" in name:
            return MATBENCH_MP_GAP
        if "e_form" in name or "eform" in name:
            return MATBENCH_MP_E_FORM
        raise InputError(f"{path}: a formula,target CSV; name it after its matbench task (mp_e_form or mp_gap)")
    if columns & {"task_id", "material_id"} and "composition" in columns:
        if {"lattice", "sites"} <= columns:
            return CGCNN_FORMATION_ENERGY
        if "formation_energy_per_atom" in columns:
            return ROOST_FORMATION_ENERGY
        if "band_gap" in columns:
            return ROOST_BAND_GAP
    raise InputError(f"{path}: CSV header {header} is not one of the MP tables this ingester knows")


def first_line(text: str) -> str:
    """The first line of ``text`` that is neither blank nor a ``#`` comment, without a byte-order mark."""
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.lstrip("\ufeff")
    return ""
