"""A tiny JSON source of crystal structures (ordered prototypes, a disordered alloy, oxidation states) used to
test protostructure feature builds on real DuckDB and PostgreSQL databases."""

from __future__ import annotations

import json
from pathlib import Path

from matlake.ingest.framework import SourceInfo
from matlake.ingest.records import MaterialRecord, RawRecord
from matlake.ingest.structures import structure_data

info = SourceInfo(name="structtoy", title="Toy structures", licence="CC0", citation="none")

PROTOTYPES = {  # space group, cubic a (A), sites of the first element, sites of the second
    "rocksalt": ("Fm-3m", 5.6, [[0, 0, 0]], [[0.5, 0.5, 0.5]]),
    "cscl": ("Pm-3m", 3.4, [[0, 0, 0]], [[0.5, 0.5, 0.5]]),
    "zincblende": ("F-43m", 5.9, [[0, 0, 0]], [[0.25, 0.25, 0.25]]),
}
PAIRS = [("Na", "Cl"), ("Mg", "O"), ("Zn", "S")]


def dataset(path: Path) -> str:
    return "structures"


def read(path: Path):
    for i, row in enumerate(json.loads(path.read_text())):
        yield RawRecord(file=str(path), position=i, payload=row, key=row["id"], excerpt=row["id"])


def normalise(raw: RawRecord) -> MaterialRecord:
    from pymatgen.core import Structure

    row = raw.payload
    structure = Structure.from_dict(row["structure"])
    return MaterialRecord(record_id=row["id"], formula=row["formula"],
                          structures=[structure_data(structure, "relaxed")])


def write(path: Path) -> Path:
    """9 ordered binaries, a Cu-Au alloy with mixed occupancy, and CsCl with oxidation states."""
    from pymatgen.core import Lattice, Structure

    rows = []
    for a, b in PAIRS:
        for name, (group, length, sites_a, sites_b) in PROTOTYPES.items():
            s = Structure.from_spacegroup(group, Lattice.cubic(length), [a, b], sites_a + sites_b)
            rows.append({"id": f"{a}{b}-{name}", "formula": f"{a}{b}", "structure": s.as_dict()})
    alloy = Structure(Lattice.cubic(4.0), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]])
    rows.append({"id": "alloy", "formula": "CuAu", "structure": alloy.as_dict()})
    ionic = Structure(Lattice.cubic(4.12), ["Cs+", "Cl-"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    rows.append({"id": "ionic", "formula": "CsCl", "structure": ionic.as_dict()})
    path.write_text(json.dumps(rows))
    return path
