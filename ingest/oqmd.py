"""OQMD (Open Quantum Materials Database): DFT formation energies by composition, and structures from its OPTIMADE API.

Formats and the dataset each file is (versioning and withdrawals are per dataset, so files never withdraw each
other's records):

* ``formula,target`` CSV (CrabNet's ``OQMD_Formation_Enthalpy_{val,test}.csv``; ``Al1Sm1Tm1`` formulas):
  dataset ``oqmd_formation_formula_csv[_<split>]``.
* ``id,composition,target`` CSV with fractional compositions (the ElemNet split in aviary, ``O0.555600Pr0.222200...``):
  dataset ``oqmd_formation_composition_csv[_<split>]``; the file's ``id`` (a row number) is kept as ``extra.row_id``.
* qmpy's whitespace ``.dat`` tables (``composition energy``, header optional): dataset ``oqmd_formation_qmpy_dat``.
* OPTIMADE v1 ``/structures`` response pages (JSON, one page per file): dataset ``oqmd_optimade_structures``.

``<split>`` is ``train``/``val``/``test`` when the file name ends with it: each split file is a complete release of
its split, so ingesting the validation file alone must not withdraw the test split.

Record ids. The tables carry no OQMD id. They hold one value per composition (OQMD's lowest-energy entry), so the
record id is the canonical composition (``Al1Sm1Tm1`` -> ``SmTmAl``; see :mod:`.formulas`): what a data scientist
joins on, independent of how a file spells or orders the formula, and the same material row in every OQMD table
that has the composition (each dataset keeps its own revision and value). A composition repeated within one file is
a ``duplicate_id`` reject, the first row kept (qmpy's legacy table repeats 34 compositions with identical values).
OPTIMADE resources keep the provider's ``id`` (unique and stable per provider by the specification); OQMD's
``_oqmd_entry_id`` and calculation id go to ``extra``.

Values. ``delta_e`` is OQMD's formation energy, eV/atom, stored as ``formation_energy_per_atom`` (the same property
as MP's, so the two can be pooled; the CrabNet file calls it a formation enthalpy, which at 0 K without zero-point
energy is the same number). Method ``PBE``: OQMD computes with VASP/PAW PBE, PBE+U for oxides and fluorides of some
transition metals and actinides, and fitted elemental chemical potentials for some elements (Kirklin et al. 2015);
these tables do not say which entries used +U. ``_oqmd_stability`` is a hull distance, stored as
``energy_above_hull`` but negative for phases below the hull of their time, so it is never clamped and carries
``extra.hull_convention``.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure

from matlake.errors import InputError
from matlake.schema.enums import Method, PropertyName, SourceName, StructureKind

from . import tabular
from .files import open_binary, open_text
from .formulas import FormulaError, composition_from_amounts, parse_formula
from .framework import SourceInfo
from .records import MaterialRecord, PropertyData, RawRecord, RecordRejected
from .structures import structure_data

info = SourceInfo(
    name=SourceName.OQMD,
    title="Open Quantum Materials Database (formation energies by composition; OPTIMADE structures)",
    licence="CC BY 4.0",
    citation="Saal et al., JOM 65, 1501 (2013); Kirklin et al., npj Comput. Mater. 1, 15010 (2015)",
    homepage="https://oqmd.org",
)

FORMULA_CSV = "oqmd_formation_formula_csv"
COMPOSITION_CSV = "oqmd_formation_composition_csv"
QMPY_DAT = "oqmd_formation_qmpy_dat"
OPTIMADE = "oqmd_optimade_structures"

ENERGY_UNIT = "eV/atom"
REFERENCE = "OQMD elemental chemical potentials (fitted for some elements)"
HULL_CONVENTION = {"hull_convention": "oqmd_hull_distance: negative below the hull, never clamped"}
_FORMULA_COLUMNS = ("formula", "composition")
_VALUE_COLUMNS = ("target", "delta_e", "formation_energy_per_atom", "energy")
_PAGE_NUMBER = re.compile(r"(\d+)")


def dataset(path: Path) -> str:
    """Which record stream ``path`` is, from its format (and its split, when the name ends with one)."""
    fmt = _format(path)
    if fmt in (OPTIMADE, QMPY_DAT):
        return fmt
    split = tabular.split_of(path)
    return f"{fmt}_{split}" if split else fmt


def read(path: Path) -> Iterator[RawRecord]:
    fmt = _format(path)
    if fmt == OPTIMADE:
        yield from _optimade_resources(path)
    elif fmt == QMPY_DAT:
        yield from tabular.whitespace_rows(path, ("composition", "energy"))
    else:
        header = tabular.read_header(path) or []
        formula = _first(_FORMULA_COLUMNS, header)
        value = _first(_VALUE_COLUMNS, header)
        yield from tabular.csv_rows(path, (formula, value), id_column="id" if "id" in header else None)


def normalise(raw: RawRecord) -> MaterialRecord:
    if not isinstance(raw.payload, tabular.Row):
        return _optimade(raw)
    fields = tabular.check_row(raw).fields
    text = fields[_first(_FORMULA_COLUMNS, fields)]
    record_id = tabular.canonical_formula(text, raw.key or text)
    value_column = _first(_VALUE_COLUMNS, fields)
    value = tabular.number(fields[value_column], f"formation energy ({value_column})", record_id)
    row_id = fields.get("id")
    return MaterialRecord(
        record_id=record_id,
        formula=text.strip(),
        properties=[PropertyData(
            property=PropertyName.FORMATION_ENERGY_PER_ATOM, value=value, unit=ENERGY_UNIT, method=Method.PBE,
            reference=REFERENCE,
        )],
        extra=None if row_id is None else {"row_id": row_id.strip()},
    )


def expand(directory: Path) -> list[Path]:
    """A directory given as input is a set of OPTIMADE pages (``matlake ingest oqmd pages/``), checked complete."""
    return page_files(directory)


def page_files(directory: Path) -> list[Path]:
    """The OPTIMADE page files of a directory, in page order, after checking that the set is complete.

    A full-mode ingest withdraws every record absent from its input, so a page set with a page missing must not
    be ingested as a release: the pages must hold ``meta.data_returned`` resources in all, and exactly the last
    one may lack a ``links.next``. Raises :class:`InputError` otherwise.
    """
    directory = Path(directory)
    pages = sorted(
        (p for p in directory.iterdir() if p.is_file() and ".json" in p.name),
        key=lambda p: [int(t) if t.isdigit() else t for t in _PAGE_NUMBER.split(p.name)],
    )
    if not pages:
        raise InputError(f"{directory} holds no OPTIMADE page files (*.json, *.json.gz)")
    n_resources, totals, open_ends = 0, set(), []
    for page in pages:
        try:
            with open_text(page) as fh:
                doc = json.load(fh)
        except (OSError, EOFError, ValueError) as exc:
            raise InputError(f"{page}: not a readable OPTIMADE page: {exc}") from None
        n_resources += len(doc.get("data") or [])
        totals.add((doc.get("meta") or {}).get("data_returned"))
        if not (doc.get("links") or {}).get("next"):
            open_ends.append(page.name)
    if open_ends != [pages[-1].name]:
        raise InputError(f"{directory}: exactly the last page ({pages[-1].name}) should have no links.next; "
                         f"pages without one: {', '.join(open_ends) or 'none'} (a page is missing?)")
    declared = sorted(t for t in totals if t is not None)
    if declared and declared != [n_resources]:
        raise InputError(f"{directory}: {len(pages)} pages hold {n_resources} resources, but meta.data_returned "
                         f"says {', '.join(map(str, declared))} (a page is missing?)")
    return pages


# ---- formats -------------------------------------------------------------------------------------------------


def _first(candidates: tuple[str, ...], columns) -> str:
    """The first candidate column present (the columns read() required are always present in normalise)."""
    for column in candidates:
        if column in columns:
            return column
    return candidates[0]


def _format(path: Path) -> str:
    name = path.name.lower()
    if ".json" in name:
        return OPTIMADE
    if ".dat" in name or ".txt" in name:
        return QMPY_DAT
    header = tabular.read_header(path) or []
    if "formula" in header:
        return FORMULA_CSV
    if "composition" in header:
        return COMPOSITION_CSV
    return FORMULA_CSV  # read() then rejects the file naming the columns it lacks


# ---- OPTIMADE ------------------------------------------------------------------------------------------------


def _optimade_resources(path: Path) -> Iterator[RawRecord]:
    """The resources of one OPTIMADE response page, decoded one by one.

    Decoding ``data`` element by element (not ``json.load`` of the page) means a truncated page still yields every
    complete resource before the cut; the framework then records the rest of the file as unreadable.
    """
    text, read_error = _read_text(path)
    try:
        yield from _decode_page(text, path)
    except ValueError:
        if read_error is not None:
            raise read_error from None  # the decompressor's error says why the JSON is cut short
        raise
    if read_error is not None:
        raise read_error


def _read_text(path: Path) -> tuple[str, Exception | None]:
    """The file's text, and the error that cut reading short (a truncated gzip, a bad byte), if any.

    ``read1`` returns what the decompressor has produced so far, so a truncated gzip gives up its text up to the cut
    (``read()`` of the whole stream would raise and keep nothing).
    """
    parts: list[str] = []
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with open_binary(path) as fh:
            while chunk := fh.read1(1 << 16):
                parts.append(decoder.decode(chunk))
            parts.append(decoder.decode(b"", final=True))
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        return "".join(parts), exc
    return "".join(parts), None


def _decode_page(text: str, path: Path) -> Iterator[RawRecord]:
    decoder = json.JSONDecoder()
    pos = _skip(text, 0)
    if pos >= len(text):
        return
    if text[pos] != "{":
        raise ValueError(f"{path.name}: an OPTIMADE response is a JSON object, found {text[pos]!r} at {pos}")
    pos, position, seen_data = _skip(text, pos + 1), 0, False
    while pos < len(text) and text[pos] != "}":
        key, pos = decoder.raw_decode(text, pos)
        pos = _expect(text, _skip(text, pos), ":", path)
        pos = _skip(text, pos)
        if key == "data":
            seen_data = True
            pos = _expect(text, pos, "[", path)
            pos = _skip(text, pos)
            while text[pos:pos + 1] != "]":
                start = pos
                resource, pos = decoder.raw_decode(text, pos)
                yield RawRecord(file=str(path), position=position, payload=resource,
                                key=resource.get("id") if isinstance(resource, dict) else None,
                                excerpt=text[start:pos][:2000])
                position += 1
                pos = _skip(text, pos)
                if text[pos:pos + 1] == ",":
                    pos = _skip(text, pos + 1)
                elif text[pos:pos + 1] != "]":
                    raise ValueError(f"{path.name}: expected ',' or ']' in data at character {pos}")
            pos += 1
        else:
            value, pos = decoder.raw_decode(text, pos)
            if key == "errors" and value:
                raise RecordRejected("optimade_error", f"{path.name} is an OPTIMADE error response: "
                                                       f"{json.dumps(value)[:500]}")
        pos = _skip(text, pos)
        if text[pos:pos + 1] == ",":
            pos = _skip(text, pos + 1)
    if pos >= len(text):
        raise ValueError(f"{path.name}: the JSON ends before the response object closes (truncated?)")
    if not seen_data:
        raise RecordRejected("not_optimade", f"{path.name}: no 'data' member; not an OPTIMADE response page")


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _expect(text: str, pos: int, char: str, path: Path) -> int:
    if text[pos:pos + 1] != char:
        raise ValueError(f"{path.name}: expected {char!r} at character {pos} (truncated or malformed JSON)")
    return pos + 1


def _optimade(raw: RawRecord) -> MaterialRecord:
    resource = raw.payload
    if not isinstance(resource, dict):
        raise RecordRejected("malformed_resource", f"resource {raw.position} of {Path(raw.file).name} is "
                                                   f"{type(resource).__name__}, not an object")
    rid = resource.get("id")
    if not rid or not isinstance(rid, str):
        raise RecordRejected("missing_id", f"resource {raw.position} of {Path(raw.file).name} has no string id")
    if resource.get("type") != "structures":
        raise RecordRejected("wrong_type", f"{rid}: type is {resource.get('type')!r}, not 'structures'", rid)
    attrs = resource.get("attributes") or {}
    structure = _structure(rid, attrs)
    composition = composition_from_amounts(
        {el.symbol: amt for el, amt in structure.composition.element_composition.items()}
    )
    formula = attrs.get("chemical_formula_reduced") or composition.formula
    try:
        written = parse_formula(formula)
    except FormulaError as exc:
        raise RecordRejected(exc.reason_code, f"{rid}: chemical_formula_reduced: {exc}", rid) from None
    if written.fractions.keys() != composition.fractions.keys() or any(
        abs(written.fractions[el] - f) > 1e-3 for el, f in composition.fractions.items()
    ):
        raise RecordRejected("inconsistent_formula", f"{rid}: chemical_formula_reduced {formula} disagrees with "
                                                     f"the sites ({composition.formula})", rid)
    calculation_id = attrs.get("_oqmd_calculation_id")
    spacegroup = attrs.get("space_group_it_number")
    data = structure_data(
        structure, StructureKind.RELAXED, calculation_id=None if calculation_id is None else str(calculation_id),
        spacegroup_number=spacegroup if isinstance(spacegroup, int) else None,
        extra={k: attrs[k] for k in ("_oqmd_spacegroup", "_oqmd_prototype") if attrs.get(k) is not None} or None,
    )
    properties = []
    for field, name, unit, extra in (
        ("_oqmd_delta_e", PropertyName.FORMATION_ENERGY_PER_ATOM, ENERGY_UNIT, None),
        ("_oqmd_stability", PropertyName.ENERGY_ABOVE_HULL, ENERGY_UNIT, HULL_CONVENTION),
        ("_oqmd_band_gap", PropertyName.BAND_GAP, "eV", None),
    ):
        value = attrs.get(field)
        if value is None:  # OPTIMADE: null means unknown
            continue
        value = _finite(value, field, rid)
        properties.append(PropertyData(property=name, value=value, unit=unit, method=Method.PBE,
                                       reference=REFERENCE if name == PropertyName.FORMATION_ENERGY_PER_ATOM else None,
                                       structure_index=0, extra=extra))
    extra = {k: attrs[k] for k in ("_oqmd_entry_id", "_oqmd_calculation_id", "_oqmd_icsd_id", "last_modified")
             if attrs.get(k) is not None}
    return MaterialRecord(record_id=rid, formula=formula, structures=[data], properties=properties,
                          extra=extra or None)


def _structure(rid: str, attrs: dict[str, Any]) -> Structure:
    """A pymatgen Structure from OPTIMADE's lattice, Cartesian positions and species (disorder kept)."""
    lattice = attrs.get("lattice_vectors")
    positions = attrs.get("cartesian_site_positions")
    names = attrs.get("species_at_sites")
    if not lattice or not positions or not names:
        missing = [k for k in ("lattice_vectors", "cartesian_site_positions", "species_at_sites") if not attrs.get(k)]
        raise RecordRejected("missing_structure", f"{rid}: no {', '.join(missing)}", rid)
    dims = attrs.get("dimension_types")
    if (dims and list(dims) != [1, 1, 1]) or any(v is None for vec in lattice for v in vec):
        raise RecordRejected("non_periodic_structure", f"{rid}: dimension_types {dims}; only bulk crystals", rid)
    nsites = attrs.get("nsites", len(names))
    if not (nsites == len(names) == len(positions)):
        raise RecordRejected("inconsistent_structure", f"{rid}: nsites {nsites}, {len(names)} species_at_sites, "
                                                       f"{len(positions)} positions", rid)
    species = {}
    for sp in attrs.get("species") or [{"name": n, "chemical_symbols": [n], "concentration": [1.0]}
                                       for n in set(names)]:
        occupancy = {}
        for symbol, conc in zip(sp.get("chemical_symbols") or [], sp.get("concentration") or []):
            if symbol in ("vacancy", "X"):
                continue
            _element(symbol, rid)
            occupancy[symbol] = _finite(conc, f"concentration of {symbol}", rid)
        if not occupancy:
            raise RecordRejected("unknown_element", f"{rid}: species {sp.get('name')!r} has no element", rid)
        species[sp.get("name")] = occupancy
    try:
        site_species = [species[n] for n in names]
    except KeyError as exc:
        raise RecordRejected("inconsistent_structure", f"{rid}: site species {exc} is not in species", rid) from None
    try:
        coords = [[_finite(x, "site position", rid) for x in xyz] for xyz in positions]
        vectors = [[_finite(x, "lattice vector", rid) for x in vec] for vec in lattice]
        volume = abs(float(np.linalg.det(np.array(vectors))))
        if not volume > 1e-6:  # Cartesian positions cannot even be placed in a degenerate cell
            raise RecordRejected("non_positive_volume", f"{rid}: lattice vectors span a volume of {volume:.3g} A^3",
                                 rid)
        return Structure(Lattice(vectors), site_species, coords, coords_are_cartesian=True)
    except (ValueError, TypeError, IndexError) as exc:
        raise RecordRejected("malformed_structure", f"{rid}: {exc}", rid) from None


def _element(symbol: str, rid: str) -> None:
    try:
        parse_formula(symbol)
    except FormulaError as exc:
        raise RecordRejected(exc.reason_code, f"{rid}: {exc}", rid) from None


def _finite(value: Any, what: str, rid: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordRejected("non_numeric_value", f"{rid}: {what} is {value!r}, not a number", rid)
    if not math.isfinite(value):
        raise RecordRejected("non_finite_value", f"{rid}: {what} is {value}", rid)
    return float(value)
