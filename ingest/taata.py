"""TAATA (Ti/Zr/Hf-Zn-N nitrides, Tholander et al. 2016) in httk's POSCAR form: one relaxed structure per file.

The first line of each POSCAR is httk's: the total VASP energy of the cell (eV, Fortran format ``-.38267572E+03``),
the run path in quotes, and a list of tags (``'(Tag) original structure: F9RbTh2'``, ``'(Tag) type: ternary'``...);
line 6 names the elements (VASP 5). The record id is the file name without ``.poscar`` and compression suffixes (the
hash httk also puts in the run path).

Formation energies need the whole set: the reference energy of an element is the lowest energy per atom among the
single-element POSCARs *in the same folder* as the file (the framework hands ``read`` one file at a time, so the
folder is the set; give a run the folder, ``matlake ingest taata raw_poscars/``, or all its POSCARs).
POSCARs that would be rejected (unreadable, non-finite energy, non-positive volume) are never references.
e_form = (E - sum_i n_i e_ref_i) / N, which reproduces aviary's ``examples.json``.
"""

from __future__ import annotations

import ast
import math
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymatgen.core import Element, Structure
from pymatgen.io.vasp import Poscar

from matlake.schema.enums import Method, PropertyName, SourceName, StructureKind

from .files import open_text
from .framework import SourceInfo
from .records import MaterialRecord, PropertyData, RawRecord, RecordRejected
from .structures import structure_data

info = SourceInfo(
    name=SourceName.TAATA,
    title="TAATA high-throughput ternary nitrides (httk POSCARs with total energies)",
    licence="MIT (aviary example files; data: Tholander et al. 2016)",
    citation="Tholander et al., J. Appl. Phys. 120, 225102 (2016); Goodall et al., Sci. Adv. 8, eabn4117 (2022)",
    homepage="https://httk.org",
)

DATASET = "poscars"
EXAMPLES_DATASET = "aviary_examples"
_COMPRESSION = (".gz", ".xz", ".bz2")
_POSCAR_NAME = re.compile(r"(\.poscar|\.vasp|^poscar|^contcar)", re.IGNORECASE)
_HEADER = re.compile(r"^\s*(?P<energy>\S+)(?:\s+'(?P<run>[^']*)')?\s*(?P<tags>\[.*\])?\s*$")
_SYMBOLS = frozenset(e.symbol for e in Element)


@dataclass(frozen=True, slots=True)
class Reference:
    """The elemental phase an element's formation energies are measured from."""

    energy_per_atom: float
    record_id: str


def dataset(path: Path) -> str:
    """POSCARs, or aviary's ``examples.json`` table of the same materials (pandas column orient)."""
    return EXAMPLES_DATASET if ".json" in Path(path).name.lower() else DATASET


def record_id(path: Path) -> str:
    """File name without compression and ``.poscar``/``.vasp`` suffixes."""
    name = Path(path).name
    for suffix in _COMPRESSION:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    for suffix in (".poscar", ".vasp"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def expand(directory: Path) -> list[Path]:
    """A directory given as input stands for its POSCARs (``matlake ingest taata raw_poscars/``)."""
    return sorted(p for p in Path(directory).iterdir() if p.is_file() and _POSCAR_NAME.search(p.name))


def read(path: Path) -> Iterator[RawRecord]:
    """One record per POSCAR, carrying the references of its folder so that ``normalise`` needs nothing else;
    or one record per row of an examples table."""
    path = Path(path)
    if dataset(path) == EXAMPLES_DATASET:
        yield from _read_examples(path)
        return
    with open_text(path) as fh:
        text = fh.read()
    refs = folder_references(path.parent)
    yield RawRecord(str(path), 0, {"text": text, "references": refs}, key=record_id(path), excerpt=text[:2000])


def _read_examples(path: Path) -> Iterator[RawRecord]:
    import json

    with open_text(path) as fh:
        columns = json.load(fh)
    if not isinstance(columns, dict) or "material_id" not in columns:
        raise RecordRejected("missing_column", f"{path.name}: expected a column-oriented table with material_id")
    index = list(columns["material_id"])
    for position, row_key in enumerate(index):
        row = {name: values.get(row_key) for name, values in columns.items() if isinstance(values, dict)}
        yield RawRecord(str(path), position, row, key=row.get("material_id"), excerpt=str(row)[:2000])


def _normalise_example(raw: RawRecord) -> MaterialRecord:
    row = raw.payload
    key = row.get("material_id")
    try:
        e_form = float(row.get("E_f"))
    except (TypeError, ValueError):
        raise RecordRejected("non_numeric_value", f"{key}: E_f {row.get('E_f')!r} is not a number", key) from None
    if not math.isfinite(e_form):
        raise RecordRejected("non_finite_value", f"{key}: E_f is {e_form}", key)
    text = row.get("structure")
    try:
        as_dict = ast.literal_eval(text) if isinstance(text, str) else text
        structure = Structure.from_dict(as_dict)
    except (ValueError, SyntaxError, KeyError, TypeError) as exc:
        raise RecordRejected("malformed_structure", f"{key}: structure cannot be read ({exc})", key) from None
    data = structure_data(structure, StructureKind.RELAXED, extra={"protostructure": row.get("protostructure")})
    prop = PropertyData(PropertyName.FORMATION_ENERGY_PER_ATOM, e_form, "eV/atom", Method.PBE,
                        reference="lowest-energy elemental phases of the TAATA set (aviary examples)",
                        structure_index=0)
    return MaterialRecord(record_id=key, formula=row.get("composition") or "", structures=[data], properties=[prop],
                          extra={"protostructure": row.get("protostructure")})


def normalise(raw: RawRecord) -> MaterialRecord:
    if raw.payload is not None and "composition" in raw.payload and "text" not in raw.payload:
        return _normalise_example(raw)
    key = raw.key
    structure, energy, header = parse_poscar(raw.payload["text"], key)
    data = structure_data(structure, StructureKind.RELAXED)
    props = [PropertyData(PropertyName.UNCORRECTED_ENERGY, energy, "eV", Method.PBE, structure_index=0)]
    extra: dict[str, Any] = dict(header)
    refs: dict[str, Reference] = raw.payload["references"]
    amounts = {str(el): float(n) for el, n in structure.composition.items()}
    missing = sorted(el for el in amounts if el not in refs)
    if missing:
        extra["formation_energy_not_computed"] = f"no elemental POSCAR for {', '.join(missing)} in the folder"
    else:
        used = {el: refs[el] for el in sorted(amounts)}
        e_form = (energy - math.fsum(n * refs[el].energy_per_atom for el, n in amounts.items())) / sum(amounts.values())
        reference = "lowest-energy elemental POSCAR in the same folder: " + ", ".join(
            f"{el}={ref.record_id}" for el, ref in used.items())
        props.append(PropertyData(
            PropertyName.FORMATION_ENERGY_PER_ATOM, e_form, "eV/atom", Method.PBE, reference=reference,
            structure_index=0,
            extra={"reference_energies_ev_per_atom": {el: ref.energy_per_atom for el, ref in used.items()}},
        ))
    return MaterialRecord(record_id=key, formula=structure.composition.formula.replace(" ", ""), structures=[data],
                          properties=props, extra=extra)


def parse_poscar(text: str, key: str | None) -> tuple[Structure, float, dict[str, Any]]:
    """(structure, total energy in eV, header fields) of an httk POSCAR; anything unusable is a RecordRejected."""
    lines = text.splitlines()
    if len(lines) < 8:
        raise RecordRejected("unreadable_structure", f"{key}: {len(lines)} lines is too short for a POSCAR", key)
    m = _HEADER.match(lines[0])
    token = m["energy"] if m else lines[0].split()[0] if lines[0].split() else ""
    try:
        energy = float(token)
    except ValueError:
        raise RecordRejected("missing_energy", f"{key}: first line does not start with an energy: {lines[0][:80]!r}",
                             key) from None
    if not math.isfinite(energy):
        raise RecordRejected("non_finite_value", f"{key}: total energy is {energy}", key)
    symbols = lines[5].split()
    if not symbols or not all(s.isalpha() for s in symbols):
        raise RecordRejected("missing_species", f"{key}: line 6 must name the elements (VASP 5 POSCAR)", key)
    unknown = [s for s in symbols if s not in _SYMBOLS]
    if unknown:
        raise RecordRejected("unknown_element", f"{key}: unknown element {unknown[0]!r}", key)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Poscar.from_str(text).structure
    except Exception as exc:  # noqa: BLE001 - pymatgen raises many types for a malformed POSCAR
        raise RecordRejected("unreadable_structure", f"{key}: {type(exc).__name__}: {exc}", key) from None
    return structure, energy, _header_fields(m, key)


def _header_fields(m: re.Match | None, key: str | None) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if m is None:
        return fields
    if m["run"]:
        fields["ht_run"] = m["run"]
    if m["tags"]:
        try:
            tags = ast.literal_eval(m["tags"])
        except (ValueError, SyntaxError):
            fields["tags_raw"] = m["tags"]
            return fields
        parsed: dict[str, str] = {}
        for tag in tags if isinstance(tags, list) else []:
            name, _, value = str(tag).removeprefix("(Tag)").strip().partition(":")
            parsed[name.strip().replace(" ", "_")] = value.strip()
        fields["tags"] = parsed
    return fields


def folder_references(folder: Path) -> dict[str, Reference]:
    """Lowest-energy single-element POSCAR per element in ``folder`` (ties: the smaller record id).

    Scanned once per folder and process: only files whose element line names one element are parsed in full, and
    the cache is checked against the folder's modification time and the reference files' own size and time.
    """
    folder = Path(folder)
    cached = _SCANS.get(folder)
    if cached is not None and cached[0] == folder.stat().st_mtime_ns and all(
            _signature(folder / name) == sig for name, sig in cached[2].items()):
        return cached[1]
    mtime = folder.stat().st_mtime_ns
    refs, used = _scan(folder)
    _SCANS[folder] = (mtime, refs, used)
    return refs


_SCANS: dict[Path, tuple[int, dict[str, Reference], dict[str, tuple[int, int] | None]]] = {}


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _scan(folder: Path) -> tuple[dict[str, Reference], dict[str, tuple[int, int] | None]]:
    best: dict[str, tuple[Reference, str]] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not entry.is_file() or not _POSCAR_NAME.search(entry.name):
            continue
        path = Path(entry.path)
        key = record_id(path)
        try:
            with open_text(path) as fh:
                head = [fh.readline() for _ in range(6)]
                if len(set(head[5].split())) != 1:
                    continue  # not a single-element POSCAR: cannot be a reference
                text = "".join(head) + fh.read()
            structure, energy, _ = parse_poscar(text, key)
        except (RecordRejected, OSError, EOFError, UnicodeDecodeError):
            continue
        elements = structure.composition.elements
        if len(elements) != 1 or not structure.volume > 0:
            continue
        ref = Reference(energy / len(structure), key)
        el = str(elements[0])
        current = best.get(el)
        if current is None or (ref.energy_per_atom, ref.record_id) < (current[0].energy_per_atom,
                                                                        current[0].record_id):
            best[el] = (ref, entry.name)
    refs = {el: ref for el, (ref, _) in best.items()}
    return refs, {name: _signature(folder / name) for _, name in best.values()}
