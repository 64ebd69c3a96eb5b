"""WBM (Wang, Botti, Marques 2021) as published by Matbench Discovery: summary table, entries, structures, symmetry.

Material ids are ``wbm-{batch}-{n}``: ``batch`` (1-5) is the number of element substitutions away from the MP
source structure and is stored in ``extra`` with ``n``; a record whose id does not have that shape is rejected.

Datasets, told apart by their columns:

- ``summary``: ``wbm-summary.csv`` (``material_id, formula, n_sites, volume, uncorrected_energy, e_form_per_atom_wbm,
  e_above_hull_wbm, bandgap_pbe, ..., e_form_per_atom_mp2020_corrected, e_above_hull_mp2020_corrected_ppd_mp,
  wyckoff_spglib, ...``). Energies become property values (the WBM paper's own values and Matbench Discovery's MP2020
  ones, told apart by ``correction_scheme`` and ``extra.column``); Wyckoff labels and the rest go to ``extra``.
- ``relaxed_entries``: pandas JSON (any orient) with ``material_id`` and ``computed_structure_entry`` columns (and
  ``initial_structure`` in the combined file): relaxed (and initial) structures, the uncorrected energy, and the
  MP2020 correction re-applied with the installed pymatgen, as for MP entries (WBM used MP-compatible settings). The
  formation energy needs the MP elemental references file beside the input, as in :mod:`matlake.ingest.mp`.
- ``initial_structures``: pandas JSON with ``material_id``, ``formula_from_cse``, ``initial_structure``.
- ``symmetry_<backend>``: e.g. ``dft-geo-opt-symprec=1e-2-moyo=0.3.1.csv.gz``: space group, Hall number and Wyckoff
  letters of the DFT-relaxed structures per id, with the backend, its version and the tolerances (kept per row). Its
  ``international_spg_name`` column holds the site-symmetry symbols, not a space-group name, so it is stored as
  ``site_symmetry_symbols``.
- ``predictions_<model>_<task>``: a model's formation energies (``material_id, e_form_per_atom_<model>``), e.g.
  ``megnet-wbm-IS2RE.csv.gz``: property values with method ``model`` and the model named in ``extra``; rows without a
  prediction are rejected as ``non_finite_value``.

The symmetry and prediction tables carry no composition: they are annotation datasets (``is_annotation``), whose
records attach to WBM materials by id with ``formula=None``, so each file loads on its own. When a WBM summary CSV
sits in the same folder (any CSV whose header has ``material_id`` and ``formula``), ``read`` takes the formulas of
the ids it lists from there.
"""

from __future__ import annotations

import ast
import csv
import json
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from pymatgen.entries.computed_entries import ComputedStructureEntry

from matlake.errors import InputError
from matlake.schema.enums import Method, PropertyName, SourceName, StructureKind

from . import mp
from .files import open_text
from .framework import SourceInfo
from .records import MaterialRecord, PropertyData, RawRecord, RecordRejected
from .structures import structure_data

info = SourceInfo(
    name=SourceName.WBM,
    title="WBM: crystals from chemically similar element substitutions (via Matbench Discovery)",
    licence="CC BY 4.0 (WBM data); MIT (Matbench Discovery files)",
    citation="Wang, Botti & Marques, npj Comput. Mater. 7, 12 (2021); Riebesell et al., Matbench Discovery, "
    "Nat. Mach. Intell. (2025)",
    homepage="https://matbench-discovery.materialsproject.org",
)

SUMMARY = "summary"
RELAXED_ENTRIES = "relaxed_entries"
INITIAL_STRUCTURES = "initial_structures"

WBM_ID = re.compile(r"^wbm-(?P<batch>[1-9]\d*)-(?P<n>\d+)$")
WBM_FUNCTIONAL = "GGA/GGA+U (MP-compatible MPRelaxSet)"
MP_REFERENCES = "MP elemental references (Matbench Discovery)"

# column -> (property, unit, method, correction_scheme, reference)
_SUMMARY_PROPERTIES: dict[str, tuple[str, str, str, str | None, str | None]] = {
    "uncorrected_energy": (PropertyName.UNCORRECTED_ENERGY, "eV", Method.UNKNOWN, None, None),
    "corrected_energy": (PropertyName.TOTAL_ENERGY, "eV", Method.UNKNOWN, None, None),
    "e_form_per_atom_wbm": (PropertyName.FORMATION_ENERGY_PER_ATOM, "eV/atom", Method.UNKNOWN, None,
                            "WBM paper (Wang et al. 2021)"),
    "e_above_hull_wbm": (PropertyName.ENERGY_ABOVE_HULL, "eV/atom", Method.UNKNOWN, None,
                         "WBM paper convex hull (Wang et al. 2021)"),
    "bandgap_pbe": (PropertyName.BAND_GAP, "eV", Method.PBE, None, None),
    "e_form_per_atom_uncorrected": (PropertyName.FORMATION_ENERGY_PER_ATOM, "eV/atom", Method.UNKNOWN, None,
                                    MP_REFERENCES),
    "e_form_per_atom_mp2020_corrected": (PropertyName.FORMATION_ENERGY_PER_ATOM, "eV/atom", Method.UNKNOWN, mp.MP2020,
                                         MP_REFERENCES),
    "e_above_hull_mp2020_corrected_ppd_mp": (PropertyName.ENERGY_ABOVE_HULL, "eV/atom", Method.UNKNOWN, mp.MP2020,
                                             "MP convex hull of all MP ComputedStructureEntries (Matbench Discovery)"),
}
_INT_COLUMNS = frozenset({"n_sites", "spg_num", "hall_num", "n_sym_ops", "n_rot_syms", "n_trans_syms"})
_FLOAT_COLUMNS = frozenset({"volume", "uncorrected_energy_from_cse", "e_correction_per_atom_mp2020",
                            "e_correction_per_atom_mp_legacy", "site_stats_fingerprint_init_final_norm_diff",
                            "symprec", "angle_tolerance"})
_LIST_COLUMNS = frozenset({"wyckoff_symbols", "site_symmetry_symbols"})
_PREDICTION = re.compile(r"^e_form_per_atom_(?P<model>[a-z0-9_]+?)(_pred_ens|_pred)?$", re.IGNORECASE)
_MODELS: dict[str, dict[str, Any]] = {
    "megnet": {"model": "MEGNet", "checkpoint": "Eform_MP_2019",
               "corrections": "the legacy MP corrections the model learned replaced by MP2020 (Matbench Discovery)",
               "correction_scheme": mp.MP2020},
}


# ---- the source contract ----------------------------------------------------------------------------------------


def dataset(path: Path) -> str:
    """Which WBM table ``path`` holds, from its header (and its name for the symmetry backend and model task)."""
    path = Path(path)
    st = path.stat()
    return _sniff(path, st.st_mtime_ns, st.st_size)


def is_annotation(dataset: str) -> bool:
    """Symmetry and prediction tables describe WBM materials by id; their records may have no formula."""
    return dataset.startswith(("symmetry_", "predictions_"))


def read(path: Path) -> Iterator[RawRecord]:
    """Raw rows (CSV) or table rows (JSON); symmetry and prediction rows carry their formula from a summary beside
    the file, where there is one."""
    path = Path(path)
    kind = dataset(path)
    if kind in (RELAXED_ENTRIES, INITIAL_STRUCTURES):
        yield from _read_json_table(path, kind)
        return
    formulas = None if kind == SUMMARY else _companion_formulas(path)
    context = _file_context(path, kind)  # one shared dict per file: what the file name says about every row
    for i, (line, row, problem) in enumerate(mp.csv_rows(path)):
        key = (row.get("material_id") or "").strip() or None
        payload = {"kind": kind, "row": row, "problem": problem, "line": line, "context": context,
                   "formula": formulas.get(key) if formulas is not None else None}
        yield RawRecord(str(path), i, payload, key=key, excerpt=mp.excerpt(",".join(row.values())))


def normalise(raw: RawRecord) -> MaterialRecord:
    """One raw row -> MaterialRecord; bad values raise RecordRejected with a snake_case reason."""
    kind = raw.payload["kind"]
    if kind == SUMMARY:
        return _normalise_summary(raw)
    if kind in (RELAXED_ENTRIES, INITIAL_STRUCTURES):
        return _normalise_structures(raw)
    if kind.startswith("symmetry"):
        return _normalise_symmetry(raw)
    return _normalise_prediction(raw)


def batch_of(material_id: str | None) -> dict[str, int]:
    """``{"batch": substitution step, "batch_index": n}`` of ``wbm-{batch}-{n}``; other ids are rejects."""
    m = WBM_ID.match(material_id or "")
    if not m:
        raise RecordRejected("malformed_id", f"{material_id!r} is not a WBM id (wbm-<batch>-<n>)", material_id)
    return {"batch": int(m["batch"]), "batch_index": int(m["n"])}


# ---- recognising files ------------------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _sniff(path: Path, mtime_ns: int, size: int) -> str:
    head = mp.sniff_head(path)
    stripped = head.lstrip()
    if not stripped:
        raise InputError(f"{path} is empty")
    if stripped[0] in "[{":
        if '"computed_structure_entry"' in head or re.search(r'"@class"\s*:\s*"ComputedStructureEntry"', head):
            return RELAXED_ENTRIES
        if '"initial_structure"' in head:
            return INITIAL_STRUCTURES
        raise InputError(f"{path}: JSON without computed_structure_entry or initial_structure columns")
    header = [c.strip().lower() for c in next(csv.reader([mp.first_line(head)]), [])]
    name = path.name.lower()
    if "material_id" not in header:
        raise InputError(f"{path}: CSV without a material_id column is not a WBM table")
    if "formula" in header:
        return SUMMARY
    if "wyckoff_symbols" in header or "spg_num" in header:
        return f"symmetry_{_backend(name)[0]}"
    predictions = [c for c in header if _PREDICTION.match(c)]
    if predictions:
        model = _PREDICTION.match(predictions[0])["model"].lower()
        return f"predictions_{model}_{_task(name)}"
    raise InputError(f"{path}: CSV header {header} is not a WBM table this ingester knows")


def _backend(name: str) -> tuple[str, str | None]:
    for backend in ("moyo", "spglib"):
        m = re.search(backend + r"[=_-]?v?(\d+\.\d+(?:\.\d+)?)?", name)
        if m:
            return backend, m.group(1)
    return "unknown", None


def _task(name: str) -> str:
    for task in ("is2re", "rs2re", "ip2e"):
        if task in name:
            return task
    return "unknown_task"


def _file_context(path: Path, kind: str) -> dict[str, Any]:
    name = path.name.lower()
    if kind.startswith("symmetry"):
        backend, backend_version = _backend(name)
        context = {"symmetry_backend": backend, "symmetry_backend_version": backend_version,
                   "structure": "dft_relaxed" if "geo-opt" in name or "relax" in name else "unstated"}
        return {k: v for k, v in context.items() if v is not None}
    task = _task(name)
    return {"task": task, "input": {"is2re": "initial (unrelaxed) structure",
                                                        "rs2re": "DFT-relaxed structure"}.get(task)}


# ---- companion formulas -----------------------------------------------------------------------------------------


def _companion_formulas(path: Path) -> dict[str, str]:
    """material_id -> formula from the WBM summary CSV beside ``path``; empty when there is none."""
    for candidate in sorted(path.parent.iterdir()):
        if candidate == path or not candidate.is_file() or ".csv" not in candidate.name.lower():
            continue
        try:
            if dataset(candidate) != SUMMARY:
                continue
        except (InputError, OSError):
            continue
        st = candidate.stat()
        return _load_formulas(candidate, st.st_mtime_ns, st.st_size)
    return {}


@lru_cache(maxsize=2)
def _load_formulas(path: Path, mtime_ns: int, size: int) -> dict[str, str]:
    return {row.get("material_id", "").strip(): row.get("formula", "") for _, row, _ in mp.csv_rows(path)}


# ---- summary ----------------------------------------------------------------------------------------------------


def _row(raw: RawRecord) -> tuple[dict[str, str], str]:
    payload = raw.payload
    key = raw.key
    if payload["problem"] is not None:
        raise RecordRejected("malformed_row", f"line {payload['line']}: {len(payload['problem'])} fields, expected "
                             f"{len(payload['row'])}", key)
    if not key:
        raise RecordRejected("missing_id", f"line {payload['line']}: no material_id")
    return payload["row"], key


def _value(column: str, text: str, key: str) -> Any:
    """A summary/symmetry cell as a typed value for ``extra`` (numbers, lists, booleans; text otherwise)."""
    text = text.strip()
    if text == "":
        return None
    if column in _INT_COLUMNS:
        return int(mp.number(text, column, key))
    if column in _FLOAT_COLUMNS:
        return mp.number(text, column, key)
    if column in _LIST_COLUMNS:
        value = _string_list(text)
        if value is None:
            raise RecordRejected("unreadable_value", f"{key}: {column} is not a list: {text[:80]!r}", key)
        return value
    if text in ("True", "False"):
        return text == "True"
    return text


def _string_list(text: str) -> list[str] | None:
    """``"['a', 'c']"`` -> ``['a', 'c']``: a fast path for Python list literals of plain quoted strings."""
    if not (text.startswith("[") and text.endswith("]")):
        return None
    inner = text[1:-1].strip()
    if not inner:
        return []
    items = [item.strip() for item in inner.split(",")]
    if all(len(item) >= 2 and item[0] == item[-1] and item[0] in "'\"" for item in items):
        return [item[1:-1] for item in items]
    try:  # quotes or commas inside the strings: let Python read it
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def _normalise_summary(raw: RawRecord) -> MaterialRecord:
    row, key = _row(raw)
    extra: dict[str, Any] = batch_of(key)
    props = []
    for column, text in row.items():
        if column in ("material_id", "formula") or column is None:
            continue
        spec = _SUMMARY_PROPERTIES.get(column)
        if spec is None:
            value = _value(column, text or "", key)
            if value is not None:
                extra[column] = value
            continue
        value = mp.number(text, column, key, required=False)
        if value is None:
            continue
        prop, unit, method, scheme, reference = spec
        note = {"column": column}
        if method != Method.PBE:
            note["functional"] = WBM_FUNCTIONAL
        if scheme is not None:
            note["applied_by"] = "Matbench Discovery"
        props.append(PropertyData(prop, value, unit, method, correction_scheme=scheme, reference=reference,
                                  extra=note))
    return MaterialRecord(record_id=key, formula=row.get("formula"), properties=props, extra=extra)


# ---- symmetry and predictions -----------------------------------------------------------------------------------


def _normalise_symmetry(raw: RawRecord) -> MaterialRecord:
    row, key = _row(raw)
    extra: dict[str, Any] = batch_of(key)
    for column, text in row.items():
        if column in ("material_id", None):
            continue
        if column == "international_spg_name" and (text or "").startswith("["):
            column = "site_symmetry_symbols"  # the published file puts the site symmetries in this column
        value = _value(column, text or "", key)
        if value is not None:
            extra[column] = value
    spg = extra.get("spg_num")
    if not isinstance(spg, int) or not 1 <= spg <= 230:
        raise RecordRejected("invalid_spacegroup", f"{key}: space group number {row.get('spg_num')!r}", key)
    wyckoffs = extra.get("wyckoff_symbols")
    if not wyckoffs or not all(isinstance(w, str) and w.isalpha() for w in wyckoffs):
        raise RecordRejected("unreadable_value", f"{key}: Wyckoff symbols {row.get('wyckoff_symbols')!r}", key)
    extra.update(raw.payload["context"])
    return MaterialRecord(record_id=key, formula=raw.payload["formula"] or None, extra=extra)


def _normalise_prediction(raw: RawRecord) -> MaterialRecord:
    row, key = _row(raw)
    extra: dict[str, Any] = batch_of(key)
    context = raw.payload["context"]
    props = []
    for column, text in row.items():
        spec = _prediction_spec(column, context["task"], context["input"])
        if spec is None:
            continue
        note, scheme = spec
        props.append(PropertyData(PropertyName.FORMATION_ENERGY_PER_ATOM, mp.number(text, column, key), "eV/atom",
                                  Method.MODEL, correction_scheme=scheme, extra=note))
    return MaterialRecord(record_id=key, formula=raw.payload["formula"] or None, properties=props, extra=extra)


@lru_cache(maxsize=64)
def _prediction_spec(column: str | None, task: str,
                     model_input: str | None) -> tuple[dict[str, Any], str | None] | None:
    """(property extra naming the model, correction scheme) of a prediction column; None for other columns."""
    m = _PREDICTION.match(column or "")
    if not m:
        return None
    known = dict(_MODELS.get(m["model"].lower(), {"model": m["model"]}))
    scheme = known.pop("correction_scheme", None)
    note = {**known, "column": column, "task": task.upper(), "input": model_input}
    return {k: v for k, v in note.items() if v}, scheme


# ---- entries and structures -------------------------------------------------------------------------------------


def _read_json_table(path: Path, kind: str) -> Iterator[RawRecord]:
    with open_text(path) as fh:
        table = json.load(fh)
    refs = mp.references_beside(path) if kind == RELAXED_ENTRIES else None
    if isinstance(table, list) and table and isinstance(table[0], Mapping) and "@class" in table[0]:
        table = [{"computed_structure_entry": entry} for entry in table]  # a plain list of entries
    for i, (label, row) in enumerate(mp.pandas_json_rows(table, str(path))):
        key = row.get("material_id")
        cse = row.get("computed_structure_entry")
        if not key and isinstance(cse, Mapping):
            key = cse.get("entry_id")
        slim = {k: v for k, v in row.items() if k not in ("computed_structure_entry", "initial_structure")}
        if isinstance(cse, Mapping):
            slim["entry"] = {k: v for k, v in cse.items() if k != "structure"}
        yield RawRecord(str(path), i, {"kind": kind, "row": row, "refs": refs},
                        key=key if isinstance(key, str) else None, excerpt=mp.excerpt(slim))


def _normalise_structures(raw: RawRecord) -> MaterialRecord:
    row, key = raw.payload["row"], raw.key
    if not key:
        raise RecordRejected("missing_id", f"row {raw.position} has no material_id")
    extra: dict[str, Any] = batch_of(key)
    structures, props, formula = [], [], row.get("formula_from_cse")
    cse = row.get("computed_structure_entry")
    if cse is not None:
        entry = mp.parse_entry(cse, key)
        if not isinstance(entry, ComputedStructureEntry):
            raise RecordRejected("missing_structure", f"{key}: the entry has no structure", key)
        structures.append(structure_data(entry.structure, StructureKind.RELAXED))
        props, notes = mp.entry_energy_properties(entry, raw.payload["refs"], 0, key)
        extra.update({k: v for k, v in notes.items() if v is not None})
        if entry.entry_id and entry.entry_id != key:
            extra["entry_id"] = entry.entry_id
        formula = entry.composition.formula.replace(" ", "")
    if row.get("initial_structure") is not None:
        initial = mp.structure_from_dict(row["initial_structure"], "initial", key)
        if structures and initial.composition.reduced_composition != entry.composition.reduced_composition:
            raise RecordRejected("composition_mismatch", f"{key}: initial structure is {initial.formula}, relaxed is "
                                 f"{entry.composition.formula}", key)
        structures.append(structure_data(initial, StructureKind.INITIAL))
        formula = formula or initial.composition.formula.replace(" ", "")
    if not structures:
        raise RecordRejected("missing_structure", f"{key}: neither an entry nor an initial structure", key)
    return MaterialRecord(record_id=key, formula=formula, structures=structures, properties=props, extra=extra)
