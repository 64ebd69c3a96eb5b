"""Materials: normalised compositions, source records, their versioned revisions, structures and property values."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from .columns import double, json_field
from .versioning import Versioned


class Composition(SQLModel, table=True):
    """One distinct chemical composition, keyed by its canonical reduced formula (shared by all sources)."""

    __tablename__ = "composition"

    id: int | None = Field(default=None, primary_key=True)
    formula: str = Field(unique=True, description="Canonical reduced formula (matlake.ingest.formulas).")
    elements: list[str] | None = json_field(nullable=False, description="Element symbols, sorted alphabetically.")
    fractions: dict[str, float] | None = json_field(nullable=False, description="Element -> atomic fraction (sums to 1).")
    amounts: dict[str, float] | None = json_field(nullable=False, description="Element -> amount in `formula`.")
    chemical_system: str = Field(description="Elements joined by '-' alphabetically, e.g. 'Fe-Li-O'.")
    n_elements: int
    is_integer: bool = Field(description="True when the reduced amounts are integers (stoichiometric).")


class Material(SQLModel, table=True):
    """One record identity in one source (mp-1234, wbm-1-2, an OQMD entry, an ICSD code). Never deleted."""

    __tablename__ = "material"
    __table_args__ = (sa.UniqueConstraint("source_id", "source_record_id"),)

    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="source.id")
    source_record_id: str = Field(description="The source's own id, e.g. 'mp-1234'.")
    first_run_id: int = Field(description="Ingest run that first saw this record.")


class MaterialRevision(Versioned, table=True):
    """The state of one material within one dataset during one span of runs: its composition and active/withdrawn."""

    __tablename__ = "material_revision"

    id: int | None = Field(default=None, primary_key=True)
    material_id: int = Field(foreign_key="material.id")
    composition_id: int | None = Field(
        default=None, foreign_key="composition.id",
        description="NULL for an annotation record (a dataset that describes materials by id, without a formula).",
    )
    formula_raw: str | None = Field(default=None, description="Formula exactly as the source wrote it.")
    status: str = Field(description="RevisionStatus: 'active' or 'withdrawn' (absent from a later full release).")
    extra: dict[str, Any] | None = json_field(description="Source-specific fields kept verbatim (e.g. WBM batch).")


class Structure(Versioned, table=True):
    """One crystal structure of a material: initial, relaxed, experimental or prototype. Lengths in angstrom."""

    __tablename__ = "structure"

    id: int | None = Field(default=None, primary_key=True)
    material_id: int = Field(foreign_key="material.id")
    composition_id: int = Field(foreign_key="composition.id")
    kind: str = Field(description="StructureKind: initial, relaxed, experimental, prototype.")
    calculation_id: str | None = Field(default=None, description="Source id of the calculation (e.g. an MP task id).")
    lattice: list[list[float]] | None = json_field(nullable=False, description="3x3 lattice vectors (rows), angstrom.")
    species: list[Any] | None = json_field(
        nullable=False, description="Per site: element symbol, or {element: occupancy} for a disordered site."
    )
    frac_coords: list[list[float]] | None = json_field(nullable=False, description="Fractional coordinates per site.")
    site_properties: dict[str, Any] | None = json_field(description="Per-site extras: magmoms, oxidation states, labels.")
    n_sites: int
    volume_a3: float = double(description="Cell volume, cubic angstrom.")
    density_g_cm3: float = double(description="Mass density, g/cm^3.")
    is_ordered: bool = Field(description="False when any site has partial occupancy.")
    spacegroup_number: int | None = Field(default=None, description="Space group as given by the source, if any.")
    extra: dict[str, Any] | None = json_field(description="Source metadata (CIF fields, R factors, temperature...).")


class PropertyValue(Versioned, table=True):
    """One value of one property of a material (optionally of one of its structures), with method and units."""

    __tablename__ = "property_value"

    id: int | None = Field(default=None, primary_key=True)
    material_id: int = Field(foreign_key="material.id")
    structure_id: int | None = Field(default=None, foreign_key="structure.id")
    property: str = Field(description="PropertyName, e.g. formation_energy_per_atom.")
    value: float = double()
    unit: str = Field(description="e.g. 'eV/atom', 'eV', 'K', 'cm^-1'.")
    method: str = Field(description="Method: PBE, GGA, GGA+U, r2SCAN, experiment, model, unknown.")
    correction_scheme: str | None = Field(default=None, description="e.g. 'MaterialsProject2020Compatibility'.")
    correction_scheme_version: str | None = Field(default=None, description="Library version that applied it.")
    reference: str | None = Field(default=None, description="Reference states used (e.g. elemental reference set).")
    extra: dict[str, Any] | None = json_field()


class RelaxationStep(Versioned, table=True):
    """One ionic step of a relaxation (e.g. an MP task): energy, forces and stress of one intermediate structure."""

    __tablename__ = "relaxation_step"

    id: int | None = Field(default=None, primary_key=True)
    material_id: int = Field(foreign_key="material.id")
    calculation_id: str = Field(description="Source id of the relaxation, e.g. an MP task id.")
    step_index: int = Field(description="0-based ionic step within the calculation (across its relaxation runs).")
    energy_ev: float = double(description="Total energy of the cell, eV.")
    energy_per_atom_ev: float = double(description="Total energy per atom, eV/atom.")
    forces_ev_per_a: list[list[float]] | None = json_field(description="n_sites x 3 forces, eV/angstrom.")
    stress_kbar: list[list[float]] | None = json_field(description="3x3 stress tensor, kbar (VASP sign convention).")
    lattice: list[list[float]] | None = json_field(nullable=False, description="3x3 lattice, angstrom.")
    species: list[str] | None = json_field(nullable=False)
    frac_coords: list[list[float]] | None = json_field(nullable=False)
