"""Materials Project: computed entries, task documents, mp-api summary documents and the MP-derived benchmark tables.

Datasets (one record stream each; ``dataset(path)`` tells them apart by content, and by name only where the content
cannot: the two matbench formula CSVs share one header):

- ``entries``: a JSON list of pymatgen ``ComputedStructureEntry`` dicts (emmet's ``Li-Fe-O.json.gz``). One record per
  material id (``data.material_id``, else ``entry_id`` without a ``-GGA``/``-GGA+U``/``-r2SCAN`` suffix): the relaxed
  structure, the uncorrected energy, and the MP2020-corrected energy and formation energy per atom.
- ``elemental_references``: a JSON object element -> ``ComputedEntry`` (Matbench Discovery's MP elemental references).
- ``tasks``: a JSON list of MP task documents. One record per material id where documents carry one (their tasks
  together), else per task id as written (emmet's alpha ids such as ``mp-ft`` are kept; their integer form, the one
  summary documents list in ``task_ids``, is ``extra.tasks[id].legacy_task_id``): input (``initial``) and output
  (``relaxed``) structures with ``calculation_id`` = task id, the final energy and band gap, and every ionic step of
  every self-consistent calculation (chronological across ``calcs_reversed``; NSCF runs have no meaningful energy or
  forces and are left out) as ``relaxation_steps``. A step's energy is ``e_wo_entrp``, the value MP reports as the
  task's energy (it equals ``output.energy`` for the last step in all 118 calculations of the emmet test files).
- ``summary``: mp-api ``SummaryDoc`` documents, a JSON list or a ``{"data": [...]}`` response page.
- ``roost_formation_energy``, ``roost_band_gap``: CSVs ``task_id|material_id, composition, <target>`` (the Roost
  paper's MP sets). The ids are MP material ids, whatever the column is called.
- ``cgcnn_formation_energy``: the same with ``lattice`` and ``sites`` columns (``'Fe @ x y z'``, fractional).
- ``matbench_mp_e_form``, ``matbench_mp_gap``: ``formula,target`` CSVs without ids; a row's id is
  ``<dataset>:<formula>#<n>``, the n-th row with that formula (see :func:`formula_row_id`).
- ``matbench_phonons``: matbench JSON (pandas ``split`` orient) of structure dicts and the last phonon DOS peak
  (cm^-1, DFPT with PBEsol); ids ``matbench_phonons:<index label>``.

Corrections. The entries carry MP2020 ``energy_adjustments`` without a version (``@version: null``), and MP2020's
parameters changed between pymatgen releases (matbench-discovery#358). So the corrections are re-applied here with
``MaterialsProject2020Compatibility`` of the installed pymatgen, whose version is stored with every corrected value;
the stored correction is kept in ``extra`` and flagged when it differs. (For the 375 entries of ``Li-Fe-O.json.gz``
re-applying with pymatgen 2026.10.24 reproduces every stored correction exactly.)

Formation energies need elemental reference energies: a file named ``*elemental*ref*.json*`` beside the entries file
(e.g. Matbench Discovery's ``2023-02-07-mp-elemental-reference-entries.json.gz``). Without one, entries are ingested
without formation energies and ``extra`` says why. e_form = (E_uncorrected + correction - sum_i n_i e_ref_i) / N.

Methods: the run type of an entry or task (GGA, GGA+U, r2SCAN) when the file states it; the benchmark tables mix
GGA and GGA+U calculations without saying which row is which, so they get ``unknown`` with the functional in extra.
"""

from __future__ import annotations

import ast
import copy
import csv
import json
import math
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Element, Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

from matlake.errors import InputError
from matlake.schema.enums import Method, PropertyName, SourceName, StructureKind

from .files import open_text
from .framework import SourceInfo
from .records import MaterialRecord, PropertyData, RawRecord, RecordRejected, RelaxationStepData
from .structures import structure_data

info = SourceInfo(
    name=SourceName.MP,
    title="Materials Project (entries, task documents, summary documents, MP-derived benchmark sets)",
    licence="CC BY 4.0 (Materials Project data)",
    citation="Jain et al., APL Mater. 1, 011002 (2013); Goodall & Lee, Nat. Commun. 11, 6280 (2020); "
    "Dunn et al., npj Comput. Mater. 6, 138 (2020)",
    homepage="https://materialsproject.org",
)

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

MP2020 = "MaterialsProject2020Compatibility"
MIXED_FUNCTIONAL = "GGA/GGA+U (per-row functional not stated)"
REFERENCE_GLOB = "*elemental*ref*.json*"
SNIFF_CHARS = 1 << 20
EXCERPT_CHARS = 2000

_SYMBOLS = frozenset(e.symbol for e in Element)
_RUN_TYPE_SUFFIX = re.compile(r"-(GGA\+U|GGA|r2SCAN|R2SCAN|SCAN|PBEsol|PBE)$")
_RUN_TYPES = {"GGA": Method.GGA, "GGA+U": Method.GGA_U, "PBE": Method.PBE, "R2SCAN": Method.R2SCAN,
              "r2SCAN": Method.R2SCAN}
_CSV_TARGETS = {
    "formation_energy_per_atom": (PropertyName.FORMATION_ENERGY_PER_ATOM, "eV/atom"),
    "band_gap": (PropertyName.BAND_GAP, "eV"),
}


# ---- the source contract ----------------------------------------------------------------------------------------


def dataset(path: Path) -> str:
    """Which MP record stream ``path`` holds, judged from its first bytes (and its name for matbench CSVs)."""
    return _sniff(Path(path), *_stat(Path(path)))


def read(path: Path) -> Iterator[RawRecord]:
    """Raw records of one file; JSON files are loaded whole (MP distributes them as single documents)."""
    path = Path(path)
    kind = dataset(path)
    if kind in (ROOST_FORMATION_ENERGY, ROOST_BAND_GAP, CGCNN_FORMATION_ENERGY):
        yield from _read_id_csv(path, kind)
    elif kind in (MATBENCH_MP_E_FORM, MATBENCH_MP_GAP):
        yield from _read_formula_csv(path, kind)
    elif kind == ENTRIES:
        yield from _read_entries(path)
    elif kind == ELEMENTAL_REFERENCES:
        yield from _read_elemental_references(path)
    elif kind == TASKS:
        yield from _read_tasks(path)
    elif kind == SUMMARY:
        yield from _read_summary(path)
    else:
        yield from _read_phonons(path)


def normalise(raw: RawRecord) -> MaterialRecord:
    """One raw record -> MaterialRecord; bad values raise RecordRejected with a snake_case reason."""
    kind = raw.payload["kind"]
    return _NORMALISERS[kind](raw)


# ---- recognising files ------------------------------------------------------------------------------------------


def _stat(path: Path) -> tuple[int, int]:
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


# ---- shared helpers (also used by the WBM ingester, whose data are MP-compatible) ------------------------------


def number(value: Any, what: str, key: str | None = None, *, required: bool = True) -> float | None:
    """A finite float, or None for a missing optional value; text, NaN and infinities are rejects."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RecordRejected("missing_value", f"{key or 'record'}: {what} is missing", key)
        return None
    if isinstance(value, bool):
        raise RecordRejected("non_numeric_value", f"{key or 'record'}: {what} is {value!r}, not a number", key)
    try:
        x = float(value)
    except (TypeError, ValueError):
        message = f"{key or 'record'}: {what} is {value!r}, not a number"
        raise RecordRejected("non_numeric_value", message, key) from None
    if not math.isfinite(x):
        raise RecordRejected("non_finite_value", f"{key or 'record'}: {what} is {x}", key)
    return x


def check_symbols(symbols: Iterable[str], key: str | None) -> None:
    """Reject element symbols pymatgen would silently turn into dummy species (``Xx``) or guess from nothing."""
    for symbol in symbols:
        if symbol not in _SYMBOLS:
            raise RecordRejected("unknown_element", f"{key or 'record'}: unknown element {symbol!r}", key)


def structure_from_dict(d: Any, what: str, key: str | None) -> Structure:
    """A pymatgen Structure from its dict, with unknown elements and unreadable dicts as rejects."""
    if not isinstance(d, Mapping) or not isinstance(d.get("sites"), list) or "lattice" not in d:
        raise RecordRejected("missing_structure", f"{key or 'record'}: no {what} structure", key)
    symbols = []
    for site in d["sites"]:
        for sp in site.get("species") or []:
            symbols.append(str(sp.get("element", "")))
    check_symbols(symbols, key)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Structure.from_dict(dict(d))
    except Exception as exc:  # pymatgen raises many types for a malformed dict
        raise RecordRejected("unreadable_structure", f"{key or 'record'}: {what} structure: {exc}", key) from None


@cache
def pymatgen_version() -> str:
    return version("pymatgen")


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


def method_of(run_type: Any) -> str:
    """The Method of an MP run type ('GGA', 'GGA+U', 'r2SCAN'); anything else is unknown."""
    return _RUN_TYPES.get(str(run_type), Method.UNKNOWN) if run_type else Method.UNKNOWN


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
    return _load_references(path, *_stat(path))


@lru_cache(maxsize=8)
def _load_references(path: Path, mtime_ns: int, size: int) -> ReferenceSet:
    with open_text(path) as fh:
        raw = json.load(fh)
    if not isinstance(raw, Mapping):
        raise InputError(f"{path}: elemental references must be a JSON object element -> ComputedEntry")
    energies, ids = {}, {}
    for element, entry in raw.items():
        if element not in _SYMBOLS or not isinstance(entry, Mapping):
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


@cache
def _mp2020():
    from pymatgen.entries.compatibility import MaterialsProject2020Compatibility

    return MaterialsProject2020Compatibility()


def mp2020_correction(entry: ComputedEntry) -> tuple[float | None, list[str], str | None]:
    """(total MP2020 correction in eV, adjustment names, why not applicable) for a copy of ``entry``."""
    from pymatgen.entries.compatibility import CompatibilityError

    work = copy.copy(entry)
    work.energy_adjustments = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            processed = _mp2020().process_entries(work, clean=True, inplace=True, on_error="raise")
    except CompatibilityError as exc:
        return None, [], str(exc)
    except Exception as exc:  # noqa: BLE001 - pymatgen fails in many ways on odd parameters
        return None, [], f"{type(exc).__name__}: {exc}"
    if not processed:
        return None, [], "excluded by MaterialsProject2020Compatibility"
    done = processed[0]
    return float(done.correction), [a.name for a in done.energy_adjustments], None


def entry_energy_properties(entry: ComputedEntry, refs: ReferenceSet | None, structure_index: int | None,
                            key: str) -> tuple[list[PropertyData], dict[str, Any]]:
    """Uncorrected energy, MP2020-corrected energy per atom and formation energy of one entry, plus what to note.

    The stored correction and adjustments go into the returned notes; a correction the scheme cannot apply, or a
    missing reference, leaves out the corrected values and says why.
    """
    run_type = entry.parameters.get("run_type") if entry.parameters else None
    method = method_of(run_type)
    uncorrected = number(entry.uncorrected_energy, "uncorrected energy", key)
    n_atoms = float(entry.composition.num_atoms)
    props = [PropertyData(PropertyName.UNCORRECTED_ENERGY, uncorrected, "eV", method,
                          structure_index=structure_index)]
    notes: dict[str, Any] = {"run_type": run_type}
    stored = [a.name for a in entry.energy_adjustments]
    if stored or entry.correction:
        notes["stored_correction_ev"] = float(entry.correction)
        notes["stored_adjustments"] = stored
    correction, names, why_not = mp2020_correction(entry)
    if correction is None:
        notes["mp2020_not_applied"] = why_not
        return props, notes
    if (stored or entry.correction) and abs(correction - float(entry.correction)) > 1e-6:
        notes["stored_correction_differs"] = True
    scheme = {"correction_scheme": MP2020, "correction_scheme_version": f"pymatgen {pymatgen_version()}"}
    corrected = uncorrected + correction
    props.append(PropertyData(PropertyName.ENERGY_PER_ATOM, corrected / n_atoms, "eV/atom", method,
                              structure_index=structure_index,
                              extra={"correction_ev": correction, "adjustments": names}, **scheme))
    if refs is None:
        notes["formation_energy_not_computed"] = f"no {REFERENCE_GLOB} file beside the input"
        return props, notes
    amounts = {str(el): float(n) for el, n in entry.composition.items()}
    e_form, missing = formation_energy_per_atom(amounts, corrected, refs)
    if e_form is None:
        notes["formation_energy_not_computed"] = f"no elemental reference for {', '.join(missing)}"
        return props, notes
    props.append(PropertyData(
        PropertyName.FORMATION_ENERGY_PER_ATOM, e_form, "eV/atom", method, reference=refs.label,
        structure_index=structure_index,
        extra={"reference_entry_ids": {el: refs.entry_ids[el] for el in sorted(amounts)}}, **scheme,
    ))
    return props, notes


def pandas_json_rows(obj: Any, what: str) -> Iterator[tuple[Any, dict[str, Any]]]:
    """(index label, row dict) of a DataFrame written by ``to_json`` in split, columns, index or records orient."""
    if isinstance(obj, list):
        for i, row in enumerate(obj):
            yield i, row if isinstance(row, dict) else {"value": row}
        return
    if not isinstance(obj, Mapping):
        raise ValueError(f"{what}: expected a JSON table, got {type(obj).__name__}")
    if "columns" in obj and "data" in obj:
        columns = list(obj["columns"])
        index = obj.get("index") or list(range(len(obj["data"])))
        for label, values in zip(index, obj["data"]):
            yield label, dict(zip(columns, values))
        return
    values = list(obj.values())
    if values and all(isinstance(v, Mapping) for v in values):
        first = values[0]
        labels = list(first.keys())
        if all(set(v.keys()) == set(labels) for v in values) and not _looks_like_row(first):
            for label in labels:  # columns orient: column -> {index: value}
                yield label, {col: obj[col][label] for col in obj}
            return
        for label, row in obj.items():  # index orient: index -> {column: value}
            yield label, dict(row)
        return
    raise ValueError(f"{what}: not a pandas JSON table (split, columns, index or records orient)")


def _looks_like_row(d: Mapping[str, Any]) -> bool:
    return any(isinstance(v, Mapping) and "@class" in v for v in d.values()) or "@class" in d


def csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str], list[str] | None]]:
    """(1-based line, row, problem) per data row; leading ``#`` comment lines are skipped, a BOM is dropped."""
    with open_text(path) as fh:
        line_no = 0
        header: list[str] | None = None
        reader = csv.reader(fh)
        for values in reader:
            line_no = reader.line_num
            if header is None:
                if not values or not "".join(values).strip() or values[0].lstrip().startswith("#"):
                    continue
                header = [h.strip().lstrip("\ufeff") for h in values]
                continue
            if not values or not "".join(values).strip():
                continue
            problem = None if len(values) == len(header) else values
            yield line_no, dict(zip(header, values)), problem


def excerpt(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:EXCERPT_CHARS]


# ---- CSV tables -------------------------------------------------------------------------------------------------


def _read_id_csv(path: Path, kind: str) -> Iterator[RawRecord]:
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


def _read_formula_csv(path: Path, kind: str) -> Iterator[RawRecord]:
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


def _normalise_id_csv(raw: RawRecord) -> MaterialRecord:
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


def _normalise_formula_csv(raw: RawRecord) -> MaterialRecord:
    row, key = _check_row(raw)
    kind = raw.payload["kind"]
    prop, unit = ((PropertyName.BAND_GAP, "eV") if kind == MATBENCH_MP_GAP
                  else (PropertyName.FORMATION_ENERGY_PER_ATOM, "eV/atom"))
    value = number(row.get("target"), "target", key)
    extra = {"column": "target", "functional": MIXED_FUNCTIONAL}
    return MaterialRecord(record_id=key, formula=row.get("formula"),
                          properties=[PropertyData(prop, value, unit, Method.UNKNOWN, extra=extra)])


# ---- computed entries -------------------------------------------------------------------------------------------


def _load_json(path: Path) -> Any:
    with open_text(path) as fh:
        return json.load(fh)


def _read_entries(path: Path) -> Iterator[RawRecord]:
    entries = _load_json(path)
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a JSON list of ComputedStructureEntry dicts")
    refs = references_beside(path)
    for i, entry in enumerate(entries):
        key = material_id_of_entry(entry) if isinstance(entry, Mapping) else None
        slim = {k: v for k, v in entry.items() if k != "structure"} if isinstance(entry, Mapping) else entry
        yield RawRecord(str(path), i, {"kind": ENTRIES, "entry": entry, "refs": refs}, key=key, excerpt=excerpt(slim))


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


def _normalise_entry(raw: RawRecord) -> MaterialRecord:
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


def _read_elemental_references(path: Path) -> Iterator[RawRecord]:
    refs = _load_json(path)
    if not isinstance(refs, Mapping):
        raise ValueError(f"{path}: expected a JSON object element -> ComputedEntry")
    for i, (element, entry) in enumerate(refs.items()):
        key = material_id_of_entry(entry) if isinstance(entry, Mapping) else None
        payload = {"kind": ELEMENTAL_REFERENCES, "element": element, "entry": entry}
        yield RawRecord(str(path), i, payload, key=key, excerpt=excerpt({element: entry}))


def _normalise_reference(raw: RawRecord) -> MaterialRecord:
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


# ---- task documents ---------------------------------------------------------------------------------------------

_ALPHA = re.compile(r"^(?P<prefix>[a-z]+)-(?P<digits>[a-z]+)$")


def legacy_task_id(task_id: str) -> str | None:
    """Integer form of an emmet alpha task id (``mp-ft`` -> ``mp-149``: base 26, a=0), as summary docs list them."""
    m = _ALPHA.match(task_id or "")
    if not m:
        return None
    n = 0
    for ch in m["digits"]:
        n = n * 26 + ord(ch) - ord("a")
    return f"{m['prefix']}-{n}"


def _read_tasks(path: Path) -> Iterator[RawRecord]:
    docs = _load_json(path)
    if isinstance(docs, Mapping) and isinstance(docs.get("data"), list):
        docs = docs["data"]
    if not isinstance(docs, list):
        raise ValueError(f"{path}: expected a JSON list of task documents")
    groups: dict[Any, list[tuple[int, Any]]] = {}
    for i, doc in enumerate(docs):
        key = _task_record_id(doc)
        groups.setdefault(key if key else ("no-id", i), []).append((i, doc))
    for key, members in groups.items():
        position = members[0][0]
        first = members[0][1]
        brief = {k: first.get(k) for k in ("task_id", "material_id", "formula_pretty", "task_type", "calc_type",
                                            "state")} if isinstance(first, Mapping) else first
        payload = {"kind": TASKS, "tasks": [doc for _, doc in members]}
        yield RawRecord(str(path), position, payload, key=key if isinstance(key, str) else None,
                        excerpt=excerpt(brief))


def _task_record_id(doc: Any) -> str | None:
    if not isinstance(doc, Mapping):
        return None
    for field in ("material_id", "task_id"):
        value = doc.get(field)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int):
            return f"mp-{value}"
    return None


def _normalise_tasks(raw: RawRecord) -> MaterialRecord:
    key = raw.key
    if not key:
        raise RecordRejected("missing_id", f"task document {raw.position} has no task_id")
    structures, props, steps, tasks_extra = [], [], [], {}
    formula = None
    seen_tasks: set[str] = set()
    for doc in raw.payload["tasks"]:
        if not isinstance(doc, Mapping):
            raise RecordRejected("unreadable_task", f"{key}: task document is not an object", key)
        task_id = _task_record_id({"task_id": doc.get("task_id")}) or key
        if task_id in seen_tasks:
            raise RecordRejected("duplicate_id", f"{key}: task {task_id} occurs twice", key)
        seen_tasks.add(task_id)
        state = doc.get("state")
        if state is not None and state != "successful":
            raise RecordRejected("unsuccessful_task", f"{key}: task {task_id} has state {state!r}", key)
        t_structs, t_props, t_steps, t_extra = _one_task(doc, task_id, key, len(structures))
        structures += t_structs
        props += t_props
        steps += t_steps
        tasks_extra[task_id] = t_extra
        formula = formula or doc.get("formula_pretty") or t_structs[-1].formula
    extra = {"task_ids": list(tasks_extra), "tasks": tasks_extra}
    return MaterialRecord(record_id=key, formula=formula, structures=structures, properties=props,
                          relaxation_steps=steps, extra=extra)


def _run_type(doc: Mapping[str, Any]) -> str | None:
    run_type = doc.get("run_type")
    if not run_type:
        for calc in doc.get("calcs_reversed") or []:
            if isinstance(calc, Mapping) and calc.get("run_type"):
                return calc["run_type"]
        inp = doc.get("input") or {}
        if isinstance(inp, Mapping) and "is_hubbard" in inp:
            return "GGA+U" if inp["is_hubbard"] else "GGA"
    return run_type


def _is_non_self_consistent(doc: Mapping[str, Any], calc: Mapping[str, Any]) -> bool:
    """NSCF runs (ICHARG >= 10) have no self-consistent energy or forces, so they give no relaxation steps."""
    labels = " ".join(str(x) for x in (doc.get("task_type"), doc.get("calc_type"), calc.get("task_type"),
                                        calc.get("calc_type"), (calc.get("task") or {}).get("type")) if x)
    if "nscf" in labels.lower():
        return True
    incar = ((calc.get("input") or {}).get("incar") or (doc.get("input") or {}).get("incar") or {})
    try:
        return int(incar.get("ICHARG", 0)) >= 10
    except (TypeError, ValueError):
        return False


def _one_task(doc: Mapping[str, Any], task_id: str, key: str, offset: int):
    run_type = _run_type(doc)
    method = method_of(run_type)
    inp = doc.get("input") or {}
    out = doc.get("output") or {}
    orig = doc.get("orig_inputs") or {}
    initial_d = inp.get("structure") or orig.get("structure") or (orig.get("poscar") or {}).get("structure")
    relaxed_d = out.get("structure") or doc.get("structure")
    spg = (out.get("spacegroup") or {}).get("number") or (doc.get("symmetry") or {}).get("number")
    structures = [
        structure_data(structure_from_dict(initial_d, "input", key), StructureKind.INITIAL, calculation_id=task_id),
        structure_data(structure_from_dict(relaxed_d, "output", key), StructureKind.RELAXED, calculation_id=task_id,
                       spacegroup_number=spg if isinstance(spg, int) else None),
    ]
    calcs = [c for c in reversed(doc.get("calcs_reversed") or []) if isinstance(c, Mapping)]
    nscf = bool(calcs) and all(_is_non_self_consistent(doc, c) for c in calcs)
    tag = {"task_id": task_id}
    props = []
    energy = number(out.get("energy"), "output energy", key, required=False)
    if energy is not None and not nscf:
        props.append(PropertyData(PropertyName.UNCORRECTED_ENERGY, energy, "eV", method,
                                  structure_index=offset + 1, extra=tag))
    gap = number(out.get("bandgap"), "band gap", key, required=False)
    if gap is not None:
        props.append(PropertyData(PropertyName.BAND_GAP, gap, "eV", method, structure_index=offset + 1, extra=tag))
    steps = []
    for calc in calcs:
        if _is_non_self_consistent(doc, calc):
            continue
        for step in ((calc.get("output") or {}).get("ionic_steps") or []):
            steps.append(_ionic_step(step, task_id, len(steps), key))
    extra = {"task_type": doc.get("task_type"), "calc_type": doc.get("calc_type"), "run_type": run_type,
             "completed_at": doc.get("completed_at"), "legacy_task_id": legacy_task_id(task_id),
             "n_calcs": len(calcs), "non_self_consistent": nscf or None}
    return structures, props, steps, {k: v for k, v in extra.items() if v is not None}


def step_energy(step: Mapping[str, Any]) -> Any:
    """The step's total energy: ``e_wo_entrp`` (what MP reports as a task's energy), else ``e_fr_energy``."""
    for name in ("e_wo_entrp", "e_fr_energy", "e_0_energy"):
        value = step.get(name)
        if value is not None and value != 0.0:
            return value
    return step.get("e_wo_entrp", step.get("e_fr_energy"))


def _ionic_step(step: Any, task_id: str, index: int, key: str) -> RelaxationStepData:
    if not isinstance(step, Mapping):
        raise RecordRejected("unreadable_step", f"{key}: ionic step {index} of {task_id} is not an object", key)
    energy = number(step_energy(step), f"energy of ionic step {index} of {task_id}", key)
    lattice, species, frac = _plain_structure(step.get("structure"), f"ionic step {index} of {task_id}", key)
    n = len(species)
    forces = _matrix(step.get("forces"), n, f"forces of step {index} of {task_id}", key)
    stress = _matrix(step.get("stress"), 3, f"stress of step {index} of {task_id}", key)
    return RelaxationStepData(calculation_id=task_id, step_index=index, energy_ev=energy, n_sites=n, lattice=lattice,
                              species=species, frac_coords=frac, forces_ev_per_a=forces, stress_kbar=stress)


def _plain_structure(d: Any, what: str, key: str):
    """Lattice, species and fractional coordinates straight from a structure dict (ordered sites only)."""
    if not isinstance(d, Mapping) or not isinstance(d.get("sites"), list) or not d["sites"]:
        raise RecordRejected("missing_structure", f"{key}: no structure for {what}", key)
    try:
        lattice = np.array(d["lattice"]["matrix"], dtype=float)
        species = [str(site["species"][0]["element"]) for site in d["sites"]]
        if any(len(site["species"]) != 1 for site in d["sites"]):
            raise ValueError("disordered site in an ionic step")
        if all("abc" in site for site in d["sites"]):
            frac = np.array([site["abc"] for site in d["sites"]], dtype=float)
        else:
            frac = np.linalg.solve(lattice.T, np.array([site["xyz"] for site in d["sites"]], dtype=float).T).T
    except (KeyError, IndexError, TypeError, ValueError, np.linalg.LinAlgError) as exc:
        raise RecordRejected("unreadable_structure", f"{key}: {what}: {type(exc).__name__}: {exc}", key) from None
    check_symbols(species, key)
    if lattice.shape != (3, 3) or frac.shape != (len(species), 3):
        raise RecordRejected("unreadable_structure", f"{key}: {what}: lattice {lattice.shape}, coords {frac.shape}",
                             key)
    if not (np.isfinite(lattice).all() and np.isfinite(frac).all()):
        raise RecordRejected("non_finite_value", f"{key}: {what} has non-finite lattice or coordinates", key)
    volume = float(np.linalg.det(lattice))
    if not volume > 0:
        raise RecordRejected("non_positive_volume", f"{key}: {what} has cell volume {volume:.4g} A^3", key)
    return lattice.tolist(), species, frac.tolist()


def _matrix(value: Any, rows: int, what: str, key: str) -> list[list[float]] | None:
    if value is None:
        return None
    try:
        arr = np.array(value, dtype=float)
    except (TypeError, ValueError):
        raise RecordRejected("unreadable_step", f"{key}: {what} is not a numeric matrix", key) from None
    if arr.shape != (rows, 3):
        raise RecordRejected("inconsistent_shape", f"{key}: {what} has shape {arr.shape}, expected ({rows}, 3)", key)
    if not np.isfinite(arr).all():
        raise RecordRejected("non_finite_value", f"{key}: {what} has non-finite values", key)
    return arr.tolist()


# ---- mp-api summary documents -----------------------------------------------------------------------------------

_SUMMARY_EXTRA = ("is_stable", "theoretical", "deprecated", "deprecation_reasons", "is_metal", "is_magnetic",
                  "ordering", "total_magnetization", "last_updated", "task_ids", "database_IDs")


def _read_summary(path: Path) -> Iterator[RawRecord]:
    docs = _load_json(path)
    if isinstance(docs, Mapping) and isinstance(docs.get("data"), list):
        docs = docs["data"]
    if not isinstance(docs, list):
        raise ValueError(f"{path}: expected a JSON list of summary documents or a {{'data': [...]}} page")
    for i, doc in enumerate(docs):
        key = doc.get("material_id") if isinstance(doc, Mapping) else None
        slim = {k: v for k, v in doc.items() if k != "structure"} if isinstance(doc, Mapping) else doc
        yield RawRecord(str(path), i, {"kind": SUMMARY, "doc": doc}, key=key if isinstance(key, str) else None,
                        excerpt=excerpt(slim))


def _normalise_summary(raw: RawRecord) -> MaterialRecord:
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


# ---- matbench JSON ----------------------------------------------------------------------------------------------


def _read_phonons(path: Path) -> Iterator[RawRecord]:
    table = _load_json(path)
    for i, (label, row) in enumerate(pandas_json_rows(table, str(path))):
        key = f"{MATBENCH_PHONONS}:{label}"
        target = {k: v for k, v in row.items() if k != "structure"}
        yield RawRecord(str(path), i, {"kind": MATBENCH_PHONONS, "row": row}, key=key, excerpt=excerpt(target))


def _normalise_phonons(raw: RawRecord) -> MaterialRecord:
    row, key = raw.payload["row"], raw.key
    target_col = next((c for c in row if c != "structure"), None)
    value = number(row.get(target_col), target_col or "target", key)
    structure = structure_from_dict(row.get("structure"), "matbench", key)
    prop = PropertyData(PropertyName.PHONON_LAST_DOS_PEAK, value, "cm^-1", Method.GGA, structure_index=0,
                        extra={"column": target_col, "functional": "PBEsol (Petretto et al. 2018 DFPT)"})
    return MaterialRecord(record_id=key, formula=structure.composition.formula.replace(" ", ""),
                          structures=[structure_data(structure, StructureKind.RELAXED)], properties=[prop])


_NORMALISERS = {
    ROOST_FORMATION_ENERGY: _normalise_id_csv,
    ROOST_BAND_GAP: _normalise_id_csv,
    CGCNN_FORMATION_ENERGY: _normalise_id_csv,
    MATBENCH_MP_E_FORM: _normalise_formula_csv,
    MATBENCH_MP_GAP: _normalise_formula_csv,
    ENTRIES: _normalise_entry,
    ELEMENTAL_REFERENCES: _normalise_reference,
    TASKS: _normalise_tasks,
    SUMMARY: _normalise_summary,
    MATBENCH_PHONONS: _normalise_phonons,
}
