"""A tiny CSV source (id,formula,energy) used to test the framework on real DuckDB and PostgreSQL databases."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

from matlake.ingest.files import open_text
from matlake.ingest.framework import SourceInfo
from matlake.ingest.records import MaterialRecord, PropertyData, RawRecord, RecordRejected

info = SourceInfo(name="toy", title="Toy CSV", licence="CC0", citation="none")
SLOW_S = 0.0


def dataset(path: Path) -> str:
    return "toy_gap" if "gap" in path.name else "toy_energy"


def read(path: Path):
    with open_text(path) as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            yield RawRecord(file=str(path), position=i, payload=row, key=row.get("id"), excerpt=str(row))


def normalise(raw: RawRecord) -> MaterialRecord:
    if SLOW_S:
        time.sleep(SLOW_S)
    row = raw.payload
    try:
        energy = float(row["energy"])
    except (TypeError, ValueError):
        raise RecordRejected("non_numeric_value", f"{row['id']}: energy {row['energy']!r} is not a number") from None
    if not math.isfinite(energy):
        raise RecordRejected("non_finite_value", f"{row['id']}: energy is {energy}")
    return MaterialRecord(
        record_id=row["id"], formula=row["formula"],
        properties=[PropertyData(property="formation_energy_per_atom", value=energy, unit="eV/atom", method="PBE")],
    )


def write(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text("id,formula,energy\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
    return path
