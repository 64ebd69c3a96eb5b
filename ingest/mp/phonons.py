"""matbench_phonons: matbench JSON (pandas ``split`` orient) of structures and their last phonon DOS peak."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from matlake.schema.enums import Method, PropertyName, StructureKind

from ..records import MaterialRecord, PropertyData, RawRecord
from ..structures import structure_data
from .datasets import MATBENCH_PHONONS
from .rows import load_json, pandas_json_rows
from .values import excerpt, number, structure_from_dict


def read_phonons(path: Path) -> Iterator[RawRecord]:
    """One raw record per table row, with the id ``matbench_phonons:<index label>``."""
    table = load_json(path)
    for i, (label, row) in enumerate(pandas_json_rows(table, str(path))):
        key = f"{MATBENCH_PHONONS}:{label}"
        target = {k: v for k, v in row.items() if k != "structure"}
        yield RawRecord(str(path), i, {"kind": MATBENCH_PHONONS, "row": row}, key=key, excerpt=excerpt(target))


def normalise_phonons(raw: RawRecord) -> MaterialRecord:
    """The structure and its last phonon DOS peak (cm^-1, DFPT with PBEsol)."""
    row, key = raw.payload["row"], raw.key
    target_col = next((c for c in row if c != "structure"), None)
    value = number(row.get(target_col), target_col or "target", key)
    structure = structure_from_dict(row.get("structure"), "matbench", key)
    prop = PropertyData(PropertyName.PHONON_LAST_DOS_PEAK, value, "cm^-1", Method.GGA, structure_index=0,
                        extra={"column": target_col, "functional": "PBEsol (Petretto et al. 2018 DFPT)"})
    return MaterialRecord(record_id=key, formula=structure.composition.formula.replace(" ", ""),
                          structures=[structure_data(structure, StructureKind.RELAXED)], properties=[prop])
