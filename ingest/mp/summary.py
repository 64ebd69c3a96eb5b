"""mp-api ``SummaryDoc`` documents (a JSON list or a ``{"data": [...]}`` response page): one record per material."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from matlake.schema.enums import Method, PropertyName, StructureKind

from ..records import MaterialRecord, PropertyData, RawRecord, RecordRejected
from ..structures import structure_data
from .datasets import SUMMARY
from .rows import json_documents
from .values import excerpt, number, structure_from_dict

_SUMMARY_EXTRA = ("is_stable", "theoretical", "deprecated", "deprecation_reasons", "is_metal", "is_magnetic",
                  "ordering", "total_magnetization", "last_updated", "task_ids", "database_IDs")


def read_summary(path: Path) -> Iterator[RawRecord]:
    """One raw record per summary document, keyed by its ``material_id``."""
    docs = json_documents(path, "summary documents")
    for i, doc in enumerate(docs):
        key = doc.get("material_id") if isinstance(doc, Mapping) else None
        slim = {k: v for k, v in doc.items() if k != "structure"} if isinstance(doc, Mapping) else doc
        yield RawRecord(str(path), i, {"kind": SUMMARY, "doc": doc}, key=key if isinstance(key, str) else None,
                        excerpt=excerpt(slim))


def normalise_summary(raw: RawRecord) -> MaterialRecord:
    """The structure and the energies, hull distance and band gap as served (their correction scheme unstated)."""
    doc, key = raw.payload["doc"], raw.key
    if not isinstance(doc, Mapping):
        raise RecordRejected("unreadable_document", f"summary document {raw.position} is not an object")
    if not key:
        raise RecordRejected("missing_id", f"summary document {raw.position} has no material_id")
    structures = []
    if doc.get("structure") is not None:
        structure = structure_from_dict(doc["structure"], "summary", key)
        spg = (doc.get("symmetry") or {}).get("number")
        structures.append(structure_data(structure, StructureKind.RELAXED,
                                         spacegroup_number=spg if isinstance(spg, int) else None))
    at = 0 if structures else None
    served = {"corrections": "as served by the Materials Project (scheme not stated in the summary document)"}
    props: list[PropertyData] = []

    def add(field: str, prop: str, unit: str, extra: dict[str, Any] | None = None, scale: float = 1.0) -> None:
        value = number(doc.get(field), field, key, required=False)
        if value is not None:
            props.append(PropertyData(prop, value * scale, unit, Method.UNKNOWN, structure_index=at,
                                      extra={"field": field, **(extra or {})}))

    n_sites = structures[0].n_sites if structures else doc.get("nsites")
    if n_sites:
        add("uncorrected_energy_per_atom", PropertyName.UNCORRECTED_ENERGY, "eV", scale=float(n_sites))
    add("energy_per_atom", PropertyName.ENERGY_PER_ATOM, "eV/atom", served)
    add("formation_energy_per_atom", PropertyName.FORMATION_ENERGY_PER_ATOM, "eV/atom", served)
    add("energy_above_hull", PropertyName.ENERGY_ABOVE_HULL, "eV/atom", served)
    add("band_gap", PropertyName.BAND_GAP, "eV")
    formula = doc.get("formula_pretty") or (structures[0].formula if structures else None)
    meta = doc.get("builder_meta") or {}
    extra = {k: doc[k] for k in _SUMMARY_EXTRA if doc.get(k) is not None}
    if doc.get("symmetry"):
        extra["symmetry"] = doc["symmetry"]
    for name in ("database_version", "emmet_version", "pymatgen_version", "build_date"):
        if isinstance(meta, Mapping) and meta.get(name) is not None:
            extra[name] = meta[name]
    return MaterialRecord(record_id=key, formula=formula, structures=structures, properties=props, extra=extra)
