"""Experimental band gaps and formation enthalpies: measured values keyed by composition, no structures.

Files and their datasets (versioning and withdrawals are per dataset: no file withdraws another's records):

==================================================  ======================================  =======================
file                                                dataset                                 property
==================================================  ======================================  =======================
``aviary_expt-non-metals.csv`` (``id,composition,Eg``)  ``expt_band_gap_nonmetals``        band gap, eV
``aviary_expt-bandgaps.csv`` (pandas index, metals 0)  ``expt_band_gap_with_metals``        band gap, eV
``crabnet_matbench_expt_gap.csv`` (``formula,target``)  ``matbench_expt_gap``                band gap, eV
``qmpy_thermodata_ssub.dat`` (``formula value``)   ``expt_formation_enthalpy_ssub``        formation enthalpy, eV/atom
pymatgen's ``exp_compounds.json.gz``               ``expt_formation_enthalpy_pymatgen``    formation enthalpy, eV/atom
==================================================  ======================================  =======================

The band gaps are Zhuo, Mansouri Tehrani and Brgoch's compilation (2018): the 3,895 non-metals are the "EX" set of
the Roost paper; the full file and matbench's ``expt_gap`` add metals with a gap of 0 eV (a gap of 0 means metal).
SSUB values are SGTE's substance database as distributed with qmpy (OQMD's fit of elemental chemical potentials).

Record ids. Composition is the identity a data scientist has for a measurement, but these files hold several
measurements of one compound (1,413 repeated compositions among the non-metals, 363 in SSUB): they are different
measurements, not duplicate records, so none is rejected. The record id is the canonical composition (see
:mod:`.formulas`) for its first row in a file and ``<composition>~<n>`` for the n-th: ``ZnTe``, ``ZnTe~2``. Spellings
of one composition share it (matbench's ``Cu1.8S1`` and ``Cu9S5`` are ``Cu9S5`` and ``Cu9S5~2``;
``formula_raw`` keeps the spelling). The plain composition id is the same material in every dataset of this source,
each dataset with its own revision and value; ``~n`` ids follow file order, so they are stable while a file is but
``~2`` of two different files need not be the same measurement. The file's own row id (the ``id`` column, or the
unnamed pandas index) goes to ``extra.row_id``; a row id repeated within a file is a ``duplicate_id`` reject (the
first row kept).

Unparsable formulas are rejects: the full band-gap file has 35 like ``MnFeCoGe.216`` (a formula and its space group
run together) that cannot be read safely.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from matlake.errors import InputError
from matlake.schema.enums import Method, PropertyName, SourceName

from . import demo, tabular
from .framework import SourceInfo
from .records import MaterialRecord, PropertyData, RawRecord, RecordRejected

info = SourceInfo(
    name=SourceName.EXPERIMENTAL,
    title="Experimental band gaps (Zhuo et al. 2018, matbench expt_gap) and formation enthalpies (SGTE SSUB, "
          "pymatgen exp_compounds)",
    licence="MIT as redistributed: band gaps via aviary (data: Zhuo et al. 2018), matbench expt_gap via CrabNet, "
            "SSUB via qmpy (data: SGTE SSUB), exp_compounds via pymatgen",
    citation="Zhuo, Mansouri Tehrani & Brgoch, J. Phys. Chem. Lett. 9, 1668 (2018); Dunn et al., npj Comput. "
             "Mater. 6, 138 (2020); SGTE Substance Database (SSUB) via qmpy, Kirklin et al., npj Comput. Mater. 1, "
             "15010 (2015); Ong et al., Comput. Mater. Sci. 68, 314 (2013)",
    homepage="https://doi.org/10.1021/acs.jpclett.8b00124",
)

BAND_GAP_NONMETALS = "expt_band_gap_nonmetals"
BAND_GAP_WITH_METALS = "expt_band_gap_with_metals"
MATBENCH_EXPT_GAP = "matbench_expt_gap"
ENTHALPY_SSUB = "expt_formation_enthalpy_ssub"
ENTHALPY_PYMATGEN = "expt_formation_enthalpy_pymatgen"

STANDARD_STATES = "elements in their standard states"
_DATASETS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"non-?metals?", re.I), BAND_GAP_NONMETALS),
    (re.compile(r"(?:matbench_)?expt_gap", re.I), MATBENCH_EXPT_GAP),
    (re.compile(r"expt?[-_]?band_?gaps?", re.I), BAND_GAP_WITH_METALS),
    (re.compile(r"ssub", re.I), ENTHALPY_SSUB),
    (re.compile(r"exp_compounds", re.I), ENTHALPY_PYMATGEN),
]
_FORMULA_COLUMNS = ("composition", "formula")
_GAP_COLUMNS = ("Eg", "target", "gap expt", "band_gap")
_ROW_ID_COLUMNS = ("id", tabular.INDEX_COLUMN)


def dataset(path: Path) -> str:
    """The dataset of a file, from its name; an unknown file is an input error rather than a guess."""
    for pattern, name in _DATASETS:
        if pattern.search(path.name):
            return name
    known = ", ".join(name for _, name in _DATASETS)
    raise InputError(f"{path.name}: not a known experimental data file (datasets: {known}); file names must "
                     "contain non-metals, expt-bandgaps, matbench_expt_gap, ssub or exp_compounds")


def read(path: Path) -> Iterator[RawRecord]:
    name = dataset(path)
    ids = tabular.OccurrenceIds()
    if name == ENTHALPY_PYMATGEN:
        for raw in demo.read(path):
            raw.key = ids(raw.payload.get("formula") or "")
            yield raw
        return
    if name == ENTHALPY_SSUB:
        rows = tabular.whitespace_rows(path, ("composition", "energy"))
    else:
        header = tabular.read_header(path) or []
        formula, gap = _first(_FORMULA_COLUMNS, header), _first(_GAP_COLUMNS, header)
        row_id = next((c for c in _ROW_ID_COLUMNS if c in header), None)
        rows = tabular.csv_rows(path, (formula, gap), id_column=row_id)
    for raw in rows:
        row: tabular.Row = raw.payload
        raw.key = ids(row.fields.get(_first(_FORMULA_COLUMNS, row.fields), ""))
        yield raw


def normalise(raw: RawRecord) -> MaterialRecord:
    if not isinstance(raw.payload, tabular.Row):
        return _pymatgen(raw)
    fields = tabular.check_row(raw).fields
    text = fields[_first(_FORMULA_COLUMNS, fields)].strip()
    tabular.canonical_formula(text, raw.key)  # a bad formula is rejected here, naming the row
    row_id = next((fields[c].strip() for c in _ROW_ID_COLUMNS if c in fields), None)
    extra = None if row_id is None else {"row_id": row_id}
    if "energy" in fields:
        value = tabular.number(fields["energy"], "formation enthalpy", raw.key)
        prop = PropertyData(property=PropertyName.FORMATION_ENTHALPY_PER_ATOM, value=value, unit="eV/atom",
                            method=Method.EXPERIMENT, reference=STANDARD_STATES)
    else:
        column = _first(_GAP_COLUMNS, fields)
        value = tabular.number(fields[column], f"band gap ({column})", raw.key)
        if value < 0:
            raise RecordRejected("negative_band_gap", f"{raw.key}: band gap {value} eV is negative", raw.key)
        prop = PropertyData(property=PropertyName.BAND_GAP, value=value, unit="eV", method=Method.EXPERIMENT)
    return MaterialRecord(record_id=raw.key, formula=text, properties=[prop], extra=extra)


def _pymatgen(raw: RawRecord) -> MaterialRecord:
    """pymatgen's experimental enthalpies, read and converted to eV/atom by the demo source, under this source's id."""
    entry = raw.payload
    if not isinstance(entry, dict):
        raise RecordRejected("malformed_record", f"entry {raw.position} is {type(entry).__name__}, not an object")
    tabular.canonical_formula(entry.get("formula"), raw.key)  # pymatgen would misread some bad formulas
    try:
        record = demo.normalise(raw)
    except (TypeError, ValueError) as exc:
        raise RecordRejected("non_numeric_value", f"{raw.key}: {exc}", raw.key) from None
    record.record_id = raw.key
    return record


def _first(candidates: tuple[str, ...], columns) -> str:
    for column in candidates:
        if column in columns:
            return column
    return candidates[0]
