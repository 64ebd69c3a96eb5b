"""ICSD crystal structures from the user's own licensed export: CIF files or tar archives of them.

ICSD data may not be redistributed, so nothing here downloads or ships it; users pass the files of their export
(``matlake ingest icsd export/*.cif`` or ``export.tar.gz``; :func:`matlake.ingest.cif.expand_paths` turns a folder
into such a list). One record per ``data_`` block, id ``ICSD-<_database_code_ICSD>`` (files without that tag: the
block name ``<n>-ICSD``, else the file stem, plus ``#<block>`` when the file holds several blocks).

What is kept, all in the structure's ``extra`` (see :func:`matlake.ingest.cif.cif_metadata`): ICSD code, structure
type, chemical names, sum and structural formulas, space group as written, standard uncertainties of the cell,
measurement temperature and pressure, R factors, the diffraction method (``neutron``, ``x-ray``, ``electron`` or
``unknown``) with the tag it was inferred from, citations, authors, title, oxidation numbers. Partial occupancies are
stored per site (``is_ordered`` false). The record's formula is ICSD's ``_chemical_formula_sum`` (so deuterides stay
deuterides and are rejected as isotopes by :func:`parse_formula`, instead of becoming hydrides as in pymatgen),
else the structure's composition; its cuprate family goes to ``extra``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from matlake.schema.enums import SourceName, StructureKind

from . import cif
from .cuprate_families import classify_cuprate
from .formulas import FormulaError, parse_formula
from .framework import SourceInfo
from .records import MaterialRecord, RawRecord, RecordRejected

info = SourceInfo(
    name=SourceName.ICSD,
    title="Inorganic Crystal Structure Database (ICSD), from the user's licensed export",
    licence="Proprietary (FIZ Karlsruhe): licensed per user; never redistribute ICSD files or structures",
    citation="Zagorac et al., J. Appl. Cryst. 52, 918-925 (2019)",
    homepage="https://icsd.products.fiz-karlsruhe.de",
)

DATASET = "icsd_structures"
_BLOCK_CODE = re.compile(r"^(\d+)-ICSD$", re.IGNORECASE)


def dataset(path: Path) -> str:
    return DATASET


def read(path: Path) -> Iterator[RawRecord]:
    """Each data block of a CIF file or of the CIFs in a tar archive (unsafe members become rejects)."""
    payloads = cif.parse_items(cif.iter_cif_texts(path), StructureKind.EXPERIMENTAL)
    for position, payload in enumerate(payloads):
        yield RawRecord(file=str(path), position=position, payload=payload, key=cif.block_key(payload),
                        excerpt=cif.excerpt(payload))


def normalise(raw: RawRecord) -> MaterialRecord:
    parsed = cif.resolve(raw.payload, StructureKind.EXPERIMENTAL)
    meta = parsed.metadata
    record_id = _record_id(parsed)
    formula = meta.get("chemical_formula_sum") or parsed.structure.formula
    try:
        family = classify_cuprate(parse_formula(formula).amounts)
    except FormulaError as exc:
        raise RecordRejected(exc.reason_code, f"{record_id}: {exc}", record_id) from None
    structure = replace(parsed.structure, extra={**meta, "cif_name": parsed.name})
    extra = {"icsd_id": record_id if record_id.startswith("ICSD-") else None, "cuprate_family": family.family,
             "n_cuo2_planes": family.n_cuo2_planes, "diffraction_method": meta.get("diffraction_method")}
    return MaterialRecord(record_id=record_id, formula=formula, structures=[structure],
                          extra={k: v for k, v in extra.items() if v is not None})


def _record_id(parsed: cif.ParsedCif) -> str:
    code = parsed.metadata.get("icsd_code")
    if isinstance(code, int):
        return f"ICSD-{code}"
    if m := _BLOCK_CODE.match(parsed.block_name):
        return f"ICSD-{int(m[1])}"
    return cif.block_key(parsed)
