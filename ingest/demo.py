"""The demo source: data that ships inside pymatgen, loaded through the same framework as the real sources.

- ``analysis/compatibility/exp_compounds.json.gz``: 2,135 experimental formation enthalpies (eV per formula unit as
  written; stored per atom), with Materials Project ids where known.
- ``analysis/prototypes/aflow_prototypes.json.gz``: 288 AFLOW prototype structures with their AFLOW labels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from pymatgen.core import Composition, Structure

from matlake.schema.enums import Method, PropertyName, SourceName, StructureKind

from .files import open_text
from .framework import SourceInfo
from .records import MaterialRecord, PropertyData, RawRecord, RecordRejected
from .structures import structure_data

info = SourceInfo(
    name=SourceName.DEMO,
    title="Data shipped with pymatgen (experimental formation enthalpies, AFLOW prototypes)",
    licence="MIT (pymatgen); AFLOW prototypes: cite Mehl et al. 2017",
    citation="Ong et al., Comput. Mater. Sci. 68, 314 (2013); Mehl et al., Comput. Mater. Sci. 136, S1 (2017)",
    homepage="https://pymatgen.org",
)

EXP_COMPOUNDS = "exp_compounds.json.gz"
AFLOW_PROTOTYPES = "aflow_prototypes.json.gz"


def demo_files() -> list[Path]:
    """The two pymatgen data files, located inside the installed package."""
    root = resources.files("pymatgen.analysis")
    return [Path(str(root / "compatibility" / EXP_COMPOUNDS)), Path(str(root / "prototypes" / AFLOW_PROTOTYPES))]


def dataset(path: Path) -> str:
    if path.name.startswith("exp_compounds"):
        return "exp_formation_enthalpy"
    if path.name.startswith("aflow_prototypes"):
        return "aflow_prototypes"
    raise RecordRejected("unknown_file", f"{path.name} is not a demo data file")


def read(path: Path) -> Iterator[RawRecord]:
    with open_text(path) as fh:
        entries = json.load(fh)
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        if dataset(path) == "aflow_prototypes":
            label = entry.get("tags", {}).get("aflow") or f"prototype-{i}"
            seen[label] = seen.get(label, 0) + 1
            key = label if seen[label] == 1 else f"{label}~{seen[label]}"
        else:
            key = entry.get("formula")
        yield RawRecord(file=str(path), position=i, payload=entry, key=key, excerpt=json.dumps(entry)[:2000])


def normalise(raw: RawRecord) -> MaterialRecord:
    entry = raw.payload
    if "snl" in entry:
        return _prototype(raw)
    return _enthalpy(raw)


def _enthalpy(raw: RawRecord) -> MaterialRecord:
    entry = raw.payload
    formula = entry.get("formula")
    energy = entry.get("exp energy")
    if not formula:
        raise RecordRejected("missing_formula", f"record {raw.position} has no formula")
    if energy is None or not math.isfinite(float(energy)):
        raise RecordRejected("non_finite_value", f"{formula}: formation enthalpy is {energy}", formula)
    n_atoms = Composition(formula).num_atoms
    uncertainty = entry.get("uncertainty")
    extra = {"per_formula_unit_ev": energy}
    if uncertainty is not None and math.isfinite(uncertainty):
        extra["uncertainty_ev_per_atom"] = uncertainty / n_atoms
    return MaterialRecord(
        record_id=formula,
        formula=formula,
        properties=[PropertyData(
            property=PropertyName.FORMATION_ENTHALPY_PER_ATOM, value=float(energy) / n_atoms, unit="eV/atom",
            method=Method.EXPERIMENT, reference="elements in their standard states", extra=extra,
        )],
        extra={"mp_id": entry.get("mpid")},
    )


def _prototype(raw: RawRecord) -> MaterialRecord:
    entry = raw.payload
    snl = entry["snl"]
    structure = Structure.from_dict({"lattice": snl["lattice"], "sites": snl["sites"], "charge": snl.get("charge")})
    tags = entry.get("tags", {})
    data = structure_data(structure, StructureKind.PROTOTYPE, extra={"aflow_label": tags.get("aflow")})
    return MaterialRecord(record_id=raw.key, formula=structure.composition.reduced_formula, structures=[data],
                          extra={k: v for k, v in tags.items() if v})


def default_files() -> list[Path]:
    return demo_files()
