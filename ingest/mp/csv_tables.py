"""The MP-derived benchmark CSVs: Roost's id tables, CGCNN's table with structures, matbench's formula tables.

Their rows mix GGA and GGA+U calculations without saying which is which, so their values get the method
``unknown`` with the functional in ``extra``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
from pymatgen.core import Lattice, Structure

from matlake.schema.enums import Method, PropertyName, StructureKind

from ..records import MaterialRecord, PropertyData, RawRecord, RecordRejected
from ..structures import structure_data
from .datasets import CGCNN_FORMATION_ENERGY, MATBENCH_MP_GAP, ROOST_BAND_GAP
from .rows import csv_rows
from .values import check_symbols, excerpt, number

MIXED_FUNCTIONAL = "GGA/GGA+U (per-row functional not stated)"

_CSV_TARGETS = {
    "formation_energy_per_atom": (PropertyName.FORMATION_ENERGY_PER_ATOM, "eV/atom"),
    "band_gap": (PropertyName.BAND_GAP, "eV"),
}


def read_id_csv(path: Path, kind: str) -> Iterator[RawRecord]:
    """Rows of a ``task_id|material_id, composition, <target>`` table, keyed by their MP id."""
    for i, (line, row, problem) in enumerate(csv_rows(path)):
        key = (row.get("material_id") or row.get("task_id") or "").strip() or None
        payload = {"kind": kind, "row": row, "problem": problem, "line": line}
        yield RawRecord(str(path), i, payload, key=key, excerpt=excerpt(",".join(row.values())))


def formula_row_id(kind: str, formula: str, occurrence: int) -> str:
    """Id of a row of an id-less matbench CSV: ``<dataset>:<formula as written>#<n-th row with that formula>``.

    Stable when rows are reordered or added, except between rows of the same formula (polymorphs cannot be told
    apart without structures); the dataset prefix keeps ids of different tables apart.
    """
    return f"{kind}:{formula}#{occurrence}"


def read_formula_csv(path: Path, kind: str) -> Iterator[RawRecord]:
    """Rows of a matbench ``formula,target`` table, keyed by :func:`formula_row_id`."""
    seen: dict[str, int] = {}
    for i, (line, row, problem) in enumerate(csv_rows(path)):
        formula = (row.get("formula") or "").strip()
        seen[formula] = seen.get(formula, 0) + 1
        key = formula_row_id(kind, formula, seen[formula])
        payload = {"kind": kind, "row": row, "problem": problem, "line": line}
        yield RawRecord(str(path), i, payload, key=key, excerpt=excerpt(",".join(row.values())))


def _check_row(raw: RawRecord) -> tuple[dict[str, str], str | None]:
    payload = raw.payload
    if payload["problem"] is not None:
        raise RecordRejected("malformed_row", f"line {payload['line']}: {len(payload['problem'])} fields, expected "
                             f"{len(payload['row'])}", raw.key)
    return payload["row"], raw.key


def normalise_id_csv(raw: RawRecord) -> MaterialRecord:
    """A Roost or CGCNN row: the composition, the target value and (CGCNN) the relaxed structure."""
    row, key = _check_row(raw)
    if not key:
        raise RecordRejected("missing_id", f"line {raw.payload['line']}: no material id")
    kind = raw.payload["kind"]
    target = "band_gap" if kind == ROOST_BAND_GAP else "formation_energy_per_atom"
    prop, unit = _CSV_TARGETS[target]
    value = number(row.get(target), target, key)
    formula = row.get("composition")
    structures = []
    if kind == CGCNN_FORMATION_ENERGY:
        structures.append(structure_data(_cgcnn_structure(row, key), StructureKind.RELAXED))
    extra = {"column": target, "functional": MIXED_FUNCTIONAL}
    props = [PropertyData(prop, value, unit, Method.UNKNOWN, structure_index=0 if structures else None, extra=extra)]
    return MaterialRecord(record_id=key, formula=formula, structures=structures, properties=props)


def _cgcnn_structure(row: Mapping[str, str], key: str) -> Structure:
    """A structure from CGCNN-example strings: lattice rows as a list literal, sites as ``'El @ fa fb fc'``."""
    try:
        matrix = np.array(ast.literal_eval(row["lattice"]), dtype=float)
        sites = ast.literal_eval(row["sites"])
        species, coords = [], []
        for site in sites:
            symbol, _, xyz = str(site).partition("@")
            species.append(symbol.strip())
            coords.append([float(x) for x in xyz.split()])
    except (ValueError, SyntaxError, TypeError, KeyError) as exc:
        raise RecordRejected("unreadable_structure", f"{key}: lattice/sites: {exc}", key) from None
    check_symbols(species, key)
    if matrix.shape != (3, 3) or not species or any(len(c) != 3 for c in coords):
        raise RecordRejected("unreadable_structure", f"{key}: lattice must be 3x3 and sites 'El @ a b c'", key)
    if not np.isfinite(matrix).all() or not np.isfinite(np.array(coords)).all():
        raise RecordRejected("non_finite_value", f"{key}: non-finite lattice or coordinates", key)
    return Structure(Lattice(matrix), species, coords)


def normalise_formula_csv(raw: RawRecord) -> MaterialRecord:
    """A matbench ``formula,target`` row: the formula and its formation energy or band gap."""
    row, key = _check_row(raw)
    kind = raw.payload["kind"]
    prop, unit = ((PropertyName.BAND_GAP, "eV") if kind == MATBENCH_MP_GAP
                  else (PropertyName.FORMATION_ENERGY_PER_ATOM, "eV/atom"))
    value = number(row.get("target"), "target", key)
    extra = {"column": "target", "functional": MIXED_FUNCTIONAL}
    return MaterialRecord(record_id=key, formula=row.get("formula"),
                          properties=[PropertyData(prop, value, unit, Method.UNKNOWN, extra=extra)])
