"""Computed entries: emmet's ``ComputedStructureEntry`` lists (``entries``) and the elemental reference files
(``elemental_references``), one record per material id."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

from matlake.schema.enums import PropertyName, StructureKind

from ..records import MaterialRecord, PropertyData, RawRecord, RecordRejected
from ..structures import structure_data
from .datasets import ELEMENTAL_REFERENCES, ENTRIES
from .energies import entry_energy_properties
from .references import references_beside
from .rows import load_json
from .values import check_symbols, excerpt, method_of, number

_RUN_TYPE_SUFFIX = re.compile(r"-(GGA\+U|GGA|r2SCAN|R2SCAN|SCAN|PBEsol|PBE)$")


def material_id_of_entry(entry: Mapping[str, Any]) -> str | None:
    """MP material id of an entry dict: ``data.material_id``, else ``entry_id`` without its run-type suffix."""
    data = entry.get("data") or {}
    mid = data.get("material_id") if isinstance(data, Mapping) else None
    if isinstance(mid, str) and mid:
        return mid
    entry_id = entry.get("entry_id")
    if isinstance(entry_id, str) and entry_id:
        return _RUN_TYPE_SUFFIX.sub("", entry_id)
    return None


def parse_entry(d: Any, key: str | None) -> ComputedEntry:
    """A ComputedEntry or ComputedStructureEntry from its dict, rejecting missing/NaN energies and odd elements."""
    if not isinstance(d, Mapping):
        raise RecordRejected("unreadable_entry", f"{key or 'record'}: entry is {type(d).__name__}, not an object", key)
    number(d.get("energy"), "energy", key)
    comp = d.get("composition")
    if isinstance(comp, Mapping):
        check_symbols(comp, key)
    structure = d.get("structure")
    if structure is not None:
        if not isinstance(structure, Mapping) or not isinstance(structure.get("sites"), list):
            raise RecordRejected("missing_structure", f"{key or 'record'}: the entry's structure is unreadable", key)
        check_symbols((str(sp.get("element", "")) for site in structure["sites"] for sp in site.get("species") or []),
                      key)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cls = ComputedStructureEntry if d.get("structure") is not None else ComputedEntry
            return cls.from_dict(dict(d))
    except Exception as exc:  # noqa: BLE001
        raise RecordRejected("unreadable_entry", f"{key or 'record'}: {type(exc).__name__}: {exc}", key) from None


def read_entries(path: Path) -> Iterator[RawRecord]:
    """One raw record per entry, each carrying the reference set found beside the file (or None)."""
    entries = load_json(path)
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a JSON list of ComputedStructureEntry dicts")
    refs = references_beside(path)
    for i, entry in enumerate(entries):
        key = material_id_of_entry(entry) if isinstance(entry, Mapping) else None
        slim = {k: v for k, v in entry.items() if k != "structure"} if isinstance(entry, Mapping) else entry
        yield RawRecord(str(path), i, {"kind": ENTRIES, "entry": entry, "refs": refs}, key=key, excerpt=excerpt(slim))


def normalise_entry(raw: RawRecord) -> MaterialRecord:
    """The relaxed structure, the uncorrected energy, and the MP2020-corrected energy and formation energy."""
    key = raw.key
    if not key:
        raise RecordRejected("missing_id", f"entry {raw.position} has neither data.material_id nor entry_id")
    entry = parse_entry(raw.payload["entry"], key)
    structures = []
    if isinstance(entry, ComputedStructureEntry):
        if entry.structure.composition.reduced_composition != entry.composition.reduced_composition:
            raise RecordRejected("composition_mismatch", f"{key}: structure is {entry.structure.formula}, entry is "
                                 f"{entry.composition.formula}", key)
        structures.append(structure_data(entry.structure, StructureKind.RELAXED,
                                         calculation_id=(entry.data or {}).get("task_id")))
    props, notes = entry_energy_properties(entry, raw.payload["refs"], 0 if structures else None, key)
    data = entry.data or {}
    extra = {"entry_id": entry.entry_id, "task_id": data.get("task_id"), "oxide_type": data.get("oxide_type"),
             **notes}
    return MaterialRecord(record_id=key, formula=entry.composition.formula.replace(" ", ""), structures=structures,
                          properties=props, extra={k: v for k, v in extra.items() if v is not None})


def read_elemental_references(path: Path) -> Iterator[RawRecord]:
    """One raw record per element of an element -> ComputedEntry object."""
    refs = load_json(path)
    if not isinstance(refs, Mapping):
        raise ValueError(f"{path}: expected a JSON object element -> ComputedEntry")
    for i, (element, entry) in enumerate(refs.items()):
        key = material_id_of_entry(entry) if isinstance(entry, Mapping) else None
        payload = {"kind": ELEMENTAL_REFERENCES, "element": element, "entry": entry}
        yield RawRecord(str(path), i, payload, key=key, excerpt=excerpt({element: entry}))


def normalise_reference(raw: RawRecord) -> MaterialRecord:
    """An elemental reference entry: its energies as stored (the correction it carries is noted, not re-applied)."""
    key = raw.key
    if not key:
        raise RecordRejected("missing_id", f"reference for {raw.payload['element']} has no entry_id")
    element = raw.payload["element"]
    check_symbols([element], key)
    entry = parse_entry(raw.payload["entry"], key)
    if [str(el) for el in entry.composition.elements] != [element]:
        raise RecordRejected("composition_mismatch", f"{key}: reference for {element} is {entry.composition}", key)
    method = method_of(entry.parameters.get("run_type") if entry.parameters else None)
    props = [
        PropertyData(PropertyName.UNCORRECTED_ENERGY, number(entry.uncorrected_energy, "energy", key), "eV", method),
        PropertyData(PropertyName.ENERGY_PER_ATOM, number(entry.energy_per_atom, "energy", key), "eV/atom", method,
                     extra={"stored_correction_ev": float(entry.correction)}),
    ]
    return MaterialRecord(record_id=key, formula=entry.composition.formula.replace(" ", ""), properties=props,
                          extra={"reference_for": element, "entry_id": entry.entry_id})
