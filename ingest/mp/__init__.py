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

Layout: this module is the source's contract (``info``, ``dataset``, ``read``, ``normalise``); ``datasets`` names
the record streams and recognises files, ``rows`` reads raw CSV rows and JSON tables, ``values`` checks numbers,
element symbols and structure dicts, ``references`` loads elemental reference energies, ``energies`` re-applies
MP2020 and computes formation energies, and one module per dataset family reads and normalises its records:
``entries`` (entries and elemental references), ``tasks`` (with ``steps`` for the ionic steps), ``summary``,
``csv_tables`` (Roost, CGCNN and matbench CSVs) and ``phonons``. The shared helpers are re-exported here; the WBM
ingester uses them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from matlake.schema.enums import SourceName

from ..framework import SourceInfo
from ..records import MaterialRecord, RawRecord
from .csv_tables import (MIXED_FUNCTIONAL, formula_row_id, normalise_formula_csv, normalise_id_csv, read_formula_csv,
                         read_id_csv)
from .datasets import (CGCNN_FORMATION_ENERGY, ELEMENTAL_REFERENCES, ENTRIES, MATBENCH_MP_E_FORM, MATBENCH_MP_GAP,
                       MATBENCH_PHONONS, ROOST_BAND_GAP, ROOST_FORMATION_ENERGY, SNIFF_CHARS, SUMMARY, TASKS,
                       dataset, first_line, sniff_head)
from .energies import MP2020, entry_energy_properties, mp2020_correction, pymatgen_version
from .entries import (material_id_of_entry, normalise_entry, normalise_reference, parse_entry,
                      read_elemental_references, read_entries)
from .phonons import normalise_phonons, read_phonons
from .references import (REFERENCE_GLOB, ReferenceSet, find_reference_file, formation_energy_per_atom, load_references,
                         references_beside)
from .rows import csv_rows, pandas_json_rows
from .steps import step_energy
from .summary import normalise_summary, read_summary
from .tasks import legacy_task_id, normalise_tasks, read_tasks
from .values import EXCERPT_CHARS, check_symbols, excerpt, method_of, number, structure_from_dict

__all__ = [
    "CGCNN_FORMATION_ENERGY", "ELEMENTAL_REFERENCES", "ENTRIES", "EXCERPT_CHARS", "MATBENCH_MP_E_FORM",
    "MATBENCH_MP_GAP", "MATBENCH_PHONONS", "MIXED_FUNCTIONAL", "MP2020", "REFERENCE_GLOB", "ROOST_BAND_GAP",
    "ROOST_FORMATION_ENERGY", "SNIFF_CHARS", "SUMMARY", "TASKS", "ReferenceSet", "check_symbols", "csv_rows",
    "dataset", "entry_energy_properties", "excerpt", "find_reference_file", "first_line", "formation_energy_per_atom",
    "formula_row_id", "info", "legacy_task_id", "load_references", "material_id_of_entry", "method_of",
    "mp2020_correction", "normalise", "number", "pandas_json_rows", "parse_entry", "pymatgen_version", "read",
    "references_beside", "sniff_head", "step_energy", "structure_from_dict",
]

info = SourceInfo(
    name=SourceName.MP,
    title="Materials Project (entries, task documents, summary documents, MP-derived benchmark sets)",
    licence="CC BY 4.0 (Materials Project data)",
    citation="Jain et al., APL Mater. 1, 011002 (2013); Goodall & Lee, Nat. Commun. 11, 6280 (2020); "
    "Dunn et al., npj Comput. Mater. 6, 138 (2020)",
    homepage="https://materialsproject.org",
)


def read(path: Path) -> Iterator[RawRecord]:
    """Raw records of one file; JSON files are loaded whole (MP distributes them as single documents)."""
    path = Path(path)
    kind = dataset(path)
    if kind in (ROOST_FORMATION_ENERGY, ROOST_BAND_GAP, CGCNN_FORMATION_ENERGY):
        yield from read_id_csv(path, kind)
    elif kind in (MATBENCH_MP_E_FORM, MATBENCH_MP_GAP):
        yield from read_formula_csv(path, kind)
    elif kind == ENTRIES:
        yield from read_entries(path)
    elif kind == ELEMENTAL_REFERENCES:
        yield from read_elemental_references(path)
    elif kind == TASKS:
        yield from read_tasks(path)
    elif kind == SUMMARY:
        yield from read_summary(path)
    else:
        yield from read_phonons(path)


def normalise(raw: RawRecord) -> MaterialRecord:
    """One raw record -> MaterialRecord; bad values raise RecordRejected with a snake_case reason."""
    kind = raw.payload["kind"]
    return _NORMALISERS[kind](raw)


_NORMALISERS = {
    ROOST_FORMATION_ENERGY: normalise_id_csv,
    ROOST_BAND_GAP: normalise_id_csv,
    CGCNN_FORMATION_ENERGY: normalise_id_csv,
    MATBENCH_MP_E_FORM: normalise_formula_csv,
    MATBENCH_MP_GAP: normalise_formula_csv,
    ENTRIES: normalise_entry,
    ELEMENTAL_REFERENCES: normalise_reference,
    TASKS: normalise_tasks,
    SUMMARY: normalise_summary,
    MATBENCH_PHONONS: normalise_phonons,
}
