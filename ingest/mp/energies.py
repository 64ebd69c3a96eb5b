"""The energies of one computed entry: uncorrected, MP2020-corrected with the installed pymatgen, and formation.

See :mod:`matlake.ingest.mp` for why the corrections are re-applied rather than taken as stored.
"""

from __future__ import annotations

import copy
import warnings
from functools import cache
from importlib.metadata import version
from typing import Any

from pymatgen.entries.computed_entries import ComputedEntry

from matlake.schema.enums import PropertyName

from ..records import PropertyData
from .references import REFERENCE_GLOB, ReferenceSet, formation_energy_per_atom
from .values import method_of, number

MP2020 = "MaterialsProject2020Compatibility"


@cache
def pymatgen_version() -> str:
    """The installed pymatgen's version, stored with every value it corrected."""
    return version("pymatgen")


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
