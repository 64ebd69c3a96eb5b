"""The contract between a source module and the ingestion framework: raw records in, normalised records out.

A source reads its files into :class:`RawRecord` objects and turns one into a :class:`MaterialRecord` (or raises
:class:`RecordRejected`); the framework owns everything else (runs, batching, versioning, rejects).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class RecordRejected(Exception):
    """One record cannot be accepted; the run continues and stores the reason."""

    def __init__(self, reason_code: str, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message
        self.key = key


@dataclass(slots=True)
class RawRecord:
    """One record as read from a file, before any interpretation."""

    file: str
    position: int
    payload: Any
    key: str | None = None
    excerpt: str | None = None


@dataclass(slots=True)
class StructureData:
    """A crystal structure in plain Python types (angstrom, fractional coordinates)."""

    kind: str
    lattice: list[list[float]]
    species: list[Any]
    frac_coords: list[list[float]]
    formula: str
    n_sites: int
    volume_a3: float
    density_g_cm3: float
    is_ordered: bool
    calculation_id: str | None = None
    spacegroup_number: int | None = None
    site_properties: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None


@dataclass(slots=True)
class PropertyData:
    """One property value; ``structure_index`` points into the record's ``structures`` when it belongs to one."""

    property: str
    value: float
    unit: str
    method: str
    correction_scheme: str | None = None
    correction_scheme_version: str | None = None
    reference: str | None = None
    structure_index: int | None = None
    extra: dict[str, Any] | None = None


@dataclass(slots=True)
class RelaxationStepData:
    """One ionic step of a relaxation: total energy (eV), forces (eV/A), stress (kbar) and the cell at that step."""

    calculation_id: str
    step_index: int
    energy_ev: float
    n_sites: int
    lattice: list[list[float]]
    species: list[str]
    frac_coords: list[list[float]]
    forces_ev_per_a: list[list[float]] | None = None
    stress_kbar: list[list[float]] | None = None


@dataclass(slots=True)
class SuperconductorData:
    tc_kelvin: float
    lattice_a_angstrom: float | None = None
    lattice_b_angstrom: float | None = None
    lattice_c_angstrom: float | None = None
    spacegroup: str | None = None
    cuprate_family: str | None = None
    n_cuo2_planes: int | None = None
    synth_doped: bool | None = None
    icsd_id: str | None = None
    extra: dict[str, Any] | None = None


@dataclass(slots=True)
class ParticipantData:
    role: str
    position: int
    formula_raw: str
    formula: str | None = None
    amount_raw: str | None = None
    amount: float | None = None
    is_symbolic: bool = False
    is_organic: bool = False
    is_nonstoichiometric: bool = False
    substitutions: dict[str, Any] | None = None
    mp_id: str | None = None


@dataclass(slots=True)
class OperationData:
    position: int
    type: str
    token: str | None = None
    conditions_raw: dict[str, Any] | None = None
    temperature_min_k: float | None = None
    temperature_max_k: float | None = None
    time_min_h: float | None = None
    time_max_h: float | None = None
    atmosphere: str | None = None
    atmosphere_raw: str | None = None
    device: str | None = None
    media: str | None = None


@dataclass(slots=True)
class RecipeData:
    doi: str | None
    synthesis_type: str | None
    target_formula: str | None
    reaction_string: str | None
    paragraph_excerpt: str | None
    participants: list[ParticipantData] = field(default_factory=list)
    operations: list[OperationData] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] | None = None


@dataclass(slots=True)
class MaterialRecord:
    """A normalised record: the identity, its composition (raw formula) and the facts attached to it.

    ``formula`` is None only in datasets the source module declares as annotations (``is_annotation(dataset)``):
    their records attach facts to a material by id and leave its composition unknown in that dataset.
    """

    record_id: str
    formula: str | None
    structures: list[StructureData] = field(default_factory=list)
    properties: list[PropertyData] = field(default_factory=list)
    superconductors: list[SuperconductorData] = field(default_factory=list)
    recipes: list[RecipeData] = field(default_factory=list)
    relaxation_steps: list[RelaxationStepData] = field(default_factory=list)
    extra: dict[str, Any] | None = None
