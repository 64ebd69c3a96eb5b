"""Names that code and tables share. Stored as plain strings so migrations never have to alter SQL enum types."""

from __future__ import annotations

from enum import StrEnum


class SourceName(StrEnum):
    MP = "mp"
    OQMD = "oqmd"
    WBM = "wbm"
    TAATA = "taata"
    EXPERIMENTAL = "experimental"
    SUPERCON = "supercon"
    ICSD = "icsd"
    SYNTHESIS = "synthesis"
    DEMO = "demo"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class RunMode(StrEnum):
    FULL = "full"
    """The input is a whole release: records absent from it are marked withdrawn."""
    PARTIAL = "partial"
    """The input is an addition or update: absent records are left alone."""


class RevisionStatus(StrEnum):
    ACTIVE = "active"
    WITHDRAWN = "withdrawn"


class StructureKind(StrEnum):
    INITIAL = "initial"
    RELAXED = "relaxed"
    EXPERIMENTAL = "experimental"
    PROTOTYPE = "prototype"


class PropertyName(StrEnum):
    FORMATION_ENERGY_PER_ATOM = "formation_energy_per_atom"
    FORMATION_ENTHALPY_PER_ATOM = "formation_enthalpy_per_atom"
    ENERGY_PER_ATOM = "energy_per_atom"
    TOTAL_ENERGY = "total_energy"
    UNCORRECTED_ENERGY = "uncorrected_energy"
    ENERGY_ABOVE_HULL = "energy_above_hull"
    BAND_GAP = "band_gap"
    PHONON_LAST_DOS_PEAK = "phonon_last_dos_peak"


class Method(StrEnum):
    PBE = "PBE"
    GGA = "GGA"
    GGA_U = "GGA+U"
    R2SCAN = "r2SCAN"
    EXPERIMENT = "experiment"
    MODEL = "model"
    UNKNOWN = "unknown"


class ParticipantRole(StrEnum):
    TARGET = "target"
    PRECURSOR = "precursor"
    BYPRODUCT = "byproduct"


class SplitPart(StrEnum):
    TRAIN = "train"
    VAL = "val"
    TEST = "test"
