"""SuperCon critical temperatures: the Stanev et al. CSV, 3DSC tables, lattice tables and 3DSC's MP structures.

Every record carries its cuprate family and number of CuO2 planes (:func:`classify_cuprate` on its formula): on its
``superconductor`` row when Tc is known, in the record's ``extra`` otherwise. Tc = 0 K means measured and not
superconducting, and is kept.

Inputs, datasets and record ids (versioning and withdrawals are scoped to a dataset; an id is the dataset name, a
colon and the natural key, so that equal keys of two datasets never merge into one material):

- Stanev CSV (``name,Tc``): ``stanev_tc``, key = the formula as written.
- 3DSC CSV (``formula_sc,tc,database_id_2,synth_doped`` after a comment line): ``3dsc_icsd_tc``,
  key = ``<formula>@ICSD-<n>``.
- Lattice table with an ``mp_id`` column (``3dsc_mp_lattice_tc_derived.csv``): ``3dsc_mp_lattice``, key = the CIF
  file stem in ``file``.
- Any other lattice table (formula, Tc, a, b, c): ``lattice_tc``, key = formula (``@ICSD-<n>`` when given).
- Tar archive of CIFs (``3dsc_mp_cifs.tar.xz``): ``3dsc_mp_structures``, key = CIF file stem.
- CIF files given one by one (e.g. ``cuprates/*.cif``): ``cif_structures``, key = CIF file stem.

- Natural keys repeat in no shared file (the 16,414 Stanev names are unique as written, although 433 compositions
  are spelled several ways; the 86,490 3DSC rows are unique by formula and ICSD id). A key that does repeat within a
  file gets ``#2``, ``#3``... in file order, so every measurement is kept and ids stay stable while the file keeps
  its order.
- CSV columns are matched case-insensitively; leading rows whose first field starts with ``#`` are comments.
  Tc comes from ``tc``/``tc_kelvin``, else ``tc_from_3dsc_icsd`` (3DSC's value), else ``tc_from_stanev``. Lattice
  constants are the conventional ones (``a_conv``...) when the table has them, else ``a``, ``b``, ``c``, stored in
  the table's setting: 3DSC follows spglib's standard settings, so the stacking axis of e.g. Cmce La2CuO4 is b
  (b is the longest axis in 526 of the 2,219 Cu-O rows of ``3dsc_mp_lattice_tc_derived.csv``).
- Variable stoichiometries (``La2-xSrxCuO4``, ``YBa2Cu3O7-d``) are rejected as ``variable_stoichiometry`` unless the
  row gives the values, in columns ``x``, ``y``, ``z``, ``d``/``delta``/``δ`` or a ``variables`` column such as
  ``x=0.15; d=0.05``; the substituted formula is stored and the written one kept in ``extra``.
- CIFs are named ``<SuperCon formula>-MP-<mp-id>[-synth_doped].cif`` by 3DSC: the record's formula is the SuperCon
  formula, the structure is MP's (kind ``relaxed``; a ``-synth_doped`` structure has the doping as partial
  occupancies), the mp-id goes to ``extra["mp_id"]`` and the structure's ``calculation_id``. Other names
  (``mp-20674.cif``) give the structure's formula. Tc, lattice and space group are joined by file name from a table
  found beside the archive or CIF file (:data:`TC_TABLE_NAMES`), decided so because ``read`` sees one file at a time;
  without one the record has no ``superconductor`` row.
- CIFs are parsed in ``normalise``, or on Dask workers when :func:`matlake.ingest.cif.use_dask` is active.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from matlake.errors import InputError
from matlake.schema.enums import SourceName, StructureKind

from . import cif
from .cuprate_families import CuprateFamily, classify_cuprate
from .files import open_text
from .formulas import FormulaError, parse_formula
from .framework import SourceInfo
from .records import MaterialRecord, RawRecord, RecordRejected, SuperconductorData

info = SourceInfo(
    name=SourceName.SUPERCON,
    title="SuperCon critical temperatures (Stanev et al. 2018 CSV, 3DSC) and 3DSC-matched Materials Project structures",
    licence="SuperCon: NIMS terms of use (the Stanev CSV states none); 3DSC and MP structures: CC BY 4.0",
    citation="Stanev et al., npj Comput. Mater. 4, 29 (2018); Sommer et al., Sci. Data 10, 816 (2023) (3DSC); "
             "Jain et al., APL Mater. 1, 011002 (2013) (Materials Project)",
    homepage="https://supercon.nims.go.jp",
)

STANEV = "stanev_tc"
THREEDSC_ICSD = "3dsc_icsd_tc"
THREEDSC_MP_LATTICE = "3dsc_mp_lattice"
LATTICE = "lattice_tc"
THREEDSC_MP_STRUCTURES = "3dsc_mp_structures"
CIF_STRUCTURES = "cif_structures"
CSV_DATASETS = (STANEV, THREEDSC_ICSD, THREEDSC_MP_LATTICE, LATTICE)

TC_TABLE_NAMES: tuple[str, ...] = (
    "3dsc_mp_lattice_tc_derived.csv", "3dsc_mp_lattice_tc_derived.csv.gz", "3dsc_mp_lattice_tc_derived.csv.xz",
)
"""Tables looked for beside a CIF archive or file to join Tc, lattice and space group by CIF file name."""

_FORMULA_COLUMNS = ("formula_sc", "formula", "name", "composition")
_TC_COLUMNS = ("tc", "tc_kelvin", "tc_k", "tc_from_3dsc_icsd", "tc_from_stanev")
_ICSD_COLUMNS = ("database_id_2", "icsd_id", "icsd")
_SPACEGROUP_COLUMNS = ("spacegroup", "space_group", "sg", "sg_cif")
_VARIABLE_COLUMNS = {"x": "x", "y": "y", "z": "z", "d": "d", "delta": "d", "δ": "d"}
_3DSC_NAME = re.compile(r"^(?P<formula>.+?)-MP-(?P<mp_id>(?:mp|mvc)-\d+)(?P<doped>-synth_doped)?$")
_MP_NAME = re.compile(r"^(?:mp|mvc)-\d+$")
_NOT_CUPRATE_REASONS = frozenset({"no Cu", "no O: not an oxide"})
_ICSD_ID = re.compile(r"^(?:icsd[-_ ]?)?(\d+)$", re.IGNORECASE)


# ---- the contract ------------------------------------------------------------------------------------------------


def dataset(path: Path) -> str:
    """Which record stream a file is, from its kind (archive, CIF) or its CSV header."""
    name = path.name.lower()
    if name.endswith(cif.ARCHIVE_SUFFIXES):
        return THREEDSC_MP_STRUCTURES
    if name.endswith(cif.CIF_SUFFIXES):
        return CIF_STRUCTURES
    try:
        with open_text(path) as fh:
            header = _header(csv.reader(fh))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read a CSV header ({exc})") from None
    kind = _csv_dataset(header)
    if kind is None:
        raise InputError(
            f"{path}: not a SuperCon file: expected a tar archive of CIFs, a .cif file or a CSV with a formula and a "
            f"Tc column (got columns {', '.join(header[:12]) or 'none'})"
        )
    return kind


def read(path: Path) -> Iterator[RawRecord]:
    """Rows of a CSV, or the CIF blocks of an archive or file (with Tc joined from a table beside it)."""
    kind = dataset(path)
    if kind in CSV_DATASETS:
        yield from _read_csv(path, kind)
    else:
        yield from _read_cifs(path, kind)


def normalise(raw: RawRecord) -> MaterialRecord:
    if isinstance(raw.payload, _CifRow):
        return _cif_record(raw)
    return _row_record(raw)


# ---- CSV tables --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Row:
    dataset: str
    record_id: str
    columns: dict[str, str]


def _header(reader) -> list[str]:
    for row in reader:
        if row and row[0].lstrip().startswith("#"):
            continue
        return [c.strip().lstrip("\ufeff").lower() for c in row]
    return []


def _csv_dataset(header: list[str]) -> str | None:
    columns = set(header)
    if not columns & set(_FORMULA_COLUMNS) or not columns & set(_TC_COLUMNS):
        return None
    if {"a", "b", "c"} <= columns or {"a_conv", "b_conv", "c_conv"} <= columns:
        return THREEDSC_MP_LATTICE if "mp_id" in columns else LATTICE
    if columns & set(_ICSD_COLUMNS):
        return THREEDSC_ICSD
    return STANEV


def _read_csv(path: Path, kind: str) -> Iterator[RawRecord]:
    seen: dict[str, int] = {}
    with open_text(path) as fh:
        reader = csv.reader(fh)
        header = _header(reader)
        for position, values in enumerate(reader):
            if not any(v.strip() for v in values):
                continue
            columns = dict(zip(header, (v.strip() for v in values)))
            if len(values) != len(header):
                columns["__ragged__"] = f"{len(values)} fields for {len(header)} columns"
            key = _natural_key(kind, columns) or f"row {reader.line_num}"
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > 1:
                key = f"{key}#{seen[key]}"
            yield RawRecord(file=str(path), position=position, payload=_Row(kind, f"{kind}:{key}", columns),
                            key=f"{kind}:{key}", excerpt=",".join(values)[:2000])


def _natural_key(kind: str, columns: dict[str, str]) -> str | None:
    formula = _first(columns, _FORMULA_COLUMNS)
    if kind == STANEV:
        return formula
    if kind == THREEDSC_MP_LATTICE and columns.get("file"):
        return cif.cif_stem(columns["file"])
    if kind == THREEDSC_MP_LATTICE and formula and columns.get("mp_id"):
        return f"{formula}@{columns['mp_id']}"
    icsd = _first(columns, _ICSD_COLUMNS)
    return f"{formula}@{icsd}" if formula and icsd else formula


def _first(columns: dict[str, str], names: tuple[str, ...]) -> str | None:
    return next((columns[n] for n in names if columns.get(n)), None)


def _row_record(raw: RawRecord) -> MaterialRecord:
    row: _Row = raw.payload
    columns = row.columns
    if "__ragged__" in columns:
        raise RecordRejected("ragged_row", f"{row.record_id}: {columns['__ragged__']}", row.record_id)
    fields = _row_fields(columns, row.record_id)
    sc = _superconductor(fields, row.record_id)
    extra = {k: v for k, v in (("formula_as_written", fields.get("formula_as_written")),
                               ("variables", fields.get("variables"))) if v is not None} or None
    return MaterialRecord(record_id=row.record_id, formula=fields["formula"], superconductors=[sc], extra=extra)


def _row_fields(columns: dict[str, str], record_id: str) -> dict[str, Any]:
    """Formula, Tc and the optional columns of one row, checked; raises RecordRejected."""
    written = _first(columns, _FORMULA_COLUMNS)
    if not written:
        raise RecordRejected("missing_formula", f"{record_id}: no formula", record_id)
    fields: dict[str, Any] = {"formula": written}
    variables = _variables(columns, record_id)
    substituted = _substituted_formula(written, variables, record_id)
    if substituted != written:
        fields.update(formula=substituted, formula_as_written=written, variables=variables)
    tc_column = next((n for n in _TC_COLUMNS if columns.get(n)), None)
    if tc_column is None:
        raise RecordRejected("missing_tc", f"{record_id}: no Tc value", record_id)
    fields["tc"] = _tc(columns[tc_column], record_id)
    fields["tc_column"] = tc_column
    conventional = all(columns.get(f"{axis}_conv") for axis in "abc")
    for axis in "abc":
        text = columns.get(f"{axis}_conv" if conventional else axis)
        fields[axis] = _length(text, axis, record_id) if text else None
    fields["spacegroup"] = _first(columns, _SPACEGROUP_COLUMNS)
    fields["icsd_id"] = _icsd_id(_first(columns, _ICSD_COLUMNS), record_id)
    fields["synth_doped"] = _flag(columns.get("synth_doped"), "synth_doped", record_id)
    fields["mp_id"] = columns.get("mp_id") or None
    fields["file"] = columns.get("file") or None
    if "tc_from_3dsc_icsd" in columns or "tc_from_stanev" in columns:
        fields["tc_sources"] = {n: _optional_float(columns.get(n)) for n in ("tc_from_3dsc_icsd", "tc_from_stanev")}
    return fields


def _superconductor(fields: dict[str, Any], record_id: str) -> SuperconductorData:
    family = _family(fields["formula"], record_id)
    extra: dict[str, Any] = {}
    if family.reason not in _NOT_CUPRATE_REASONS:
        extra["cuprate_family_reason"] = family.reason
    for key in ("mp_id", "file", "tc_sources", "tc_from"):
        if fields.get(key) is not None:
            extra[key] = fields[key]
    if fields.get("tc_column") not in (None, "tc", "tc_kelvin", "tc_k"):
        extra["tc_column"] = fields["tc_column"]
    return SuperconductorData(
        tc_kelvin=fields["tc"], lattice_a_angstrom=fields.get("a"), lattice_b_angstrom=fields.get("b"),
        lattice_c_angstrom=fields.get("c"), spacegroup=fields.get("spacegroup"), cuprate_family=family.family,
        n_cuo2_planes=family.n_cuo2_planes, synth_doped=fields.get("synth_doped"), icsd_id=fields.get("icsd_id"),
        extra=extra or None,
    )


def _tc(text: str, record_id: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RecordRejected("non_numeric_value", f"{record_id}: Tc {text!r} is not a number", record_id) from None
    if not math.isfinite(value):
        raise RecordRejected("non_finite_value", f"{record_id}: Tc is {text}", record_id)
    if value < 0:
        raise RecordRejected("negative_tc", f"{record_id}: Tc {value:g} K is negative", record_id)
    return value


def _length(text: str, axis: str, record_id: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RecordRejected("non_numeric_value", f"{record_id}: lattice {axis} {text!r} is not a number",
                             record_id) from None
    if not math.isfinite(value) or value <= 0:
        raise RecordRejected("non_positive_lattice", f"{record_id}: lattice {axis} = {text} A", record_id)
    return value


def _optional_float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _icsd_id(text: str | None, record_id: str) -> str | None:
    if not text:
        return None
    m = _ICSD_ID.match(text)
    if m is None:
        raise RecordRejected("invalid_icsd_id", f"{record_id}: ICSD id {text!r} is not ICSD-<number>", record_id)
    return f"ICSD-{int(m[1])}"


def _flag(text: str | None, name: str, record_id: str) -> bool | None:
    if not text:
        return None
    lowered = text.lower()
    if lowered in ("true", "1", "yes", "t"):
        return True
    if lowered in ("false", "0", "no", "f"):
        return False
    raise RecordRejected("invalid_flag", f"{record_id}: {name} {text!r} is not true/false", record_id)


@lru_cache(maxsize=100_000)
def _classify(formula: str) -> CuprateFamily:
    return classify_cuprate(parse_formula(formula).amounts)


def _family(formula: str, record_id: str) -> CuprateFamily:
    try:
        return _classify(formula)
    except FormulaError as exc:
        raise RecordRejected(exc.reason_code, str(exc), record_id) from None


# ---- variable stoichiometry --------------------------------------------------------------------------------------


def _variables(columns: dict[str, str], record_id: str) -> dict[str, float]:
    values: dict[str, float] = {}
    pairs = [(_VARIABLE_COLUMNS[c], v) for c, v in columns.items() if c in _VARIABLE_COLUMNS and v]
    if columns.get("variables"):
        for part in re.split(r"[;,\s]+", columns["variables"].strip()):
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep or name.strip().lower() not in _VARIABLE_COLUMNS:
                raise RecordRejected("invalid_variables", f"{record_id}: cannot read variables "
                                     f"{columns['variables']!r} (expected e.g. x=0.15; d=0.05)", record_id)
            pairs.append((_VARIABLE_COLUMNS[name.strip().lower()], value))
    for name, text in pairs:
        try:
            value = float(text)
        except ValueError:
            raise RecordRejected("invalid_variables", f"{record_id}: {name} = {text!r} is not a number",
                                 record_id) from None
        if not math.isfinite(value):
            raise RecordRejected("invalid_variables", f"{record_id}: {name} = {text}", record_id)
        values[name] = value
    return values


def _substituted_formula(formula: str, variables: dict[str, float], record_id: str) -> str:
    """The formula itself, or with the row's variable values put in; unresolved variables raise RecordRejected."""
    try:
        parse_formula(formula)
        return formula
    except FormulaError as exc:
        if exc.reason_code != "variable_stoichiometry":
            raise RecordRejected(exc.reason_code, str(exc), record_id) from None
        reason = str(exc)
    if not variables:
        raise RecordRejected(
            "variable_stoichiometry",
            f"{record_id}: {reason}; the record gives no value for it (add a column x/y/z/d or 'variables')",
            record_id,
        )
    substituted = substitute_variables(formula, variables)
    try:
        parse_formula(substituted)
    except FormulaError as exc:
        code = exc.reason_code
        raise RecordRejected(code, f"{record_id}: {formula!r} with {variables} gives {substituted!r}: {exc}",
                             record_id) from None
    return substituted


_ELEMENTS: frozenset[str] | None = None
_AMOUNT = re.compile(r"(\d+(?:\.\d+)?|\.\d+)?([xyzdδ])?")


def substitute_variables(formula: str, values: dict[str, float]) -> str:
    """``La2-xSrxCuO4`` with ``{'x': 0.15}`` -> ``La1.85Sr0.15CuO4``; ``δ`` counts as ``d``; zero amounts drop out.

    Only amount expressions made of numbers, variables, ``+`` and ``-`` are evaluated; anything else is left in
    place for :func:`parse_formula` to reject.
    """
    global _ELEMENTS
    if _ELEMENTS is None:
        from pymatgen.core.periodic_table import Element

        _ELEMENTS = frozenset(e.symbol for e in Element)
    values = {("d" if k == "δ" else k): v for k, v in values.items()}
    out: list[str] = []
    i, n = 0, len(formula)
    while i < n:
        ch = formula[i]
        if ch.isupper():
            symbol = formula[i:i + 2] if formula[i:i + 2] in _ELEMENTS else ch
            i += len(symbol)
            amount, i = _amount_expression(formula, i, values)
            if amount is None:
                out.append(symbol)
            elif amount != 0:
                out.append(symbol + _format_amount(amount))
            continue
        if ch in ")]}":
            amount, j = _amount_expression(formula, i + 1, values)
            out.append(ch + ("" if amount is None else _format_amount(amount)))
            i = j
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _amount_expression(text: str, i: int, values: dict[str, float]) -> tuple[float | None, int]:
    """Evaluate ``2-x``, ``0.5x``, ``7-d``, ``x`` at ``text[i:]``; None (and ``i``) when no variable is involved."""
    total, sign, j, end, used_variable = 0.0, 1.0, i, i, False
    while True:
        m = _AMOUNT.match(text, j)
        number, variable = m.group(1), m.group(2)
        if variable is not None and variable.replace("δ", "d") not in values:
            variable = None  # not ours: leave it for the formula parser
        if number is None and variable is None:
            break  # an operator not followed by a term we read stays in the text
        term = float(number) if number is not None else 1.0
        if variable is not None:
            term *= values[variable.replace("δ", "d")]
            used_variable = True
            end = m.end()
        else:
            end = m.start(1) + len(number)
        total += sign * term
        if end + 1 < len(text) and text[end] in "+-−" and (text[end + 1].isdigit() or text[end + 1] in ".xyzdδ"):
            sign = 1.0 if text[end] == "+" else -1.0
            j = end + 1
            continue
        break
    if not used_variable:
        return None, i
    return round(total, 10), end


def _format_amount(value: float) -> str:
    text = f"{value:.10g}"
    return "" if text == "1" else text


# ---- CIF structures ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CifRow:
    cif: cif.CifPayload
    table_row: dict[str, Any] | None
    table_name: str | None


def _read_cifs(path: Path, kind: str) -> Iterator[RawRecord]:
    table_path = next((p for name in TC_TABLE_NAMES if (p := path.parent / name).is_file()), None)
    table = _tc_table(table_path) if table_path is not None else {}
    payloads = cif.parse_items(cif.iter_cif_texts(path), StructureKind.RELAXED)
    for position, payload in enumerate(payloads):
        row = table.get(payload.stem)
        yield RawRecord(file=str(path), position=position,
                        payload=_CifRow(payload, row, table_path.name if row is not None else None),
                        key=f"{kind}:{cif.block_key(payload)}", excerpt=cif.excerpt(payload))


def _tc_table(path: Path) -> dict[str, dict[str, Any]]:
    stat = path.stat()
    return _load_tc_table(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=4)
def _load_tc_table(path: str, size: int, mtime_ns: int) -> dict[str, dict[str, Any]]:
    """CIF file stem -> checked row fields; rows that would be rejected in their own dataset are left out."""
    table: dict[str, dict[str, Any]] = {}
    for raw in _read_csv(Path(path), THREEDSC_MP_LATTICE):
        columns = raw.payload.columns
        if not columns.get("file") or "__ragged__" in columns:
            continue
        try:
            table.setdefault(cif.cif_stem(columns["file"]), _row_fields(columns, raw.payload.record_id))
        except RecordRejected:
            continue
    return table


def _cif_record(raw: RawRecord) -> MaterialRecord:
    row: _CifRow = raw.payload
    parsed = cif.resolve(row.cif, StructureKind.RELAXED)
    stem = parsed.stem
    record_id = raw.key
    named = _3DSC_NAME.match(stem)
    mp_id = named["mp_id"] if named else (stem if _MP_NAME.match(stem) else None)
    synth_doped = bool(named["doped"]) if named else None
    meta = parsed.metadata
    structure = replace(
        parsed.structure, calculation_id=mp_id,
        extra={k: meta[k] for k in ("cif_block", "spacegroup_hm", "parser_warnings") if k in meta}
        | {"cif_name": parsed.name},
    )
    formula = named["formula"] if named else structure.formula.replace(" ", "")
    family = _family(formula, record_id)
    extra: dict[str, Any] = {"mp_id": mp_id, "synth_doped": synth_doped}
    superconductors = []
    if row.table_row is not None:
        fields = {**row.table_row, "formula": formula, "synth_doped": synth_doped
                  if synth_doped is not None else row.table_row.get("synth_doped"), "tc_from": row.table_name}
        superconductors.append(_superconductor(fields, record_id))
    else:
        extra.update(cuprate_family=family.family, n_cuo2_planes=family.n_cuo2_planes)
    return MaterialRecord(record_id=record_id, formula=formula, structures=[structure],
                          superconductors=superconductors, extra={k: v for k, v in extra.items() if v is not None})
