"""Turn pymatgen structures into :class:`StructureData`, rejecting cells no model should see."""

from __future__ import annotations

import math
from typing import Any

from pymatgen.core import Structure

from .records import RecordRejected, StructureData


def structure_data(
    structure: Structure,
    kind: str,
    *,
    calculation_id: str | None = None,
    spacegroup_number: int | None = None,
    extra: dict[str, Any] | None = None,
) -> StructureData:
    """Plain-type copy of ``structure`` with volume, density and order flags; bad cells raise RecordRejected."""
    volume = float(structure.volume)
    if not math.isfinite(volume) or volume <= 0:
        raise RecordRejected("non_positive_volume", f"{kind} structure has cell volume {volume:.4g} A^3")
    if len(structure) == 0:
        raise RecordRejected("empty_structure", f"{kind} structure has no sites")
    ordered = structure.is_ordered
    species: list[Any] = []
    for site in structure:
        if ordered:
            species.append(site.specie.symbol if hasattr(site.specie, "symbol") else str(site.specie))
        else:
            species.append({getattr(sp, "symbol", str(sp)): float(occ) for sp, occ in site.species.items()})
    site_properties = {k: list(v) for k, v in structure.site_properties.items()} or None
    oxidation = _oxidation_states(structure)
    if oxidation:
        site_properties = {**(site_properties or {}), "oxidation_states": oxidation}
    return StructureData(
        kind=kind,
        lattice=structure.lattice.matrix.tolist(),
        species=species,
        frac_coords=structure.frac_coords.tolist(),
        formula=structure.composition.formula,
        n_sites=len(structure),
        volume_a3=volume,
        density_g_cm3=float(structure.density),
        is_ordered=ordered,
        calculation_id=calculation_id,
        spacegroup_number=spacegroup_number,
        site_properties=site_properties,
        extra=extra,
    )


def _oxidation_states(structure: Structure) -> list[Any] | None:
    states = []
    found = False
    for site in structure:
        per_site = {}
        for sp in site.species:
            oxi = getattr(sp, "oxi_state", None)
            if oxi is not None:
                found = True
                per_site[getattr(sp, "symbol", str(sp))] = oxi
        states.append(per_site)
    return states if found else None
