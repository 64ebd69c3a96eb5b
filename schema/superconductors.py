"""Superconductivity: Tc records, cuprate Cu-O geometry per structure, and lattice calibrations per family."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel

from .columns import double, json_field, timestamp
from .versioning import Versioned


class SuperconductorRecord(Versioned, table=True):
    """One measured critical temperature of a material (Tc = 0 K: measured and not superconducting)."""

    __tablename__ = "superconductor"

    id: int | None = Field(default=None, primary_key=True)
    material_id: int = Field(foreign_key="material.id")
    tc_kelvin: float = double()
    is_superconducting: bool
    lattice_a_angstrom: float | None = double(nullable=True)
    lattice_b_angstrom: float | None = double(nullable=True)
    lattice_c_angstrom: float | None = double(nullable=True)
    spacegroup: str | None = None
    cuprate_family: str | None = Field(default=None, description="One of the 16 thesis families, 'other', or NULL.")
    n_cuo2_planes: int | None = None
    synth_doped: bool | None = None
    icsd_id: str | None = None
    extra: dict[str, Any] | None = json_field()


class CuprateGeometry(SQLModel, table=True):
    """In-plane and apical Cu-O distances (angstrom) of one Cu site in a CuO2 plane of one structure."""

    __tablename__ = "cuprate_geometry"

    id: int | None = Field(default=None, primary_key=True)
    structure_id: int = Field(foreign_key="structure.id")
    cu_site_index: int
    in_plane_cu_o_angstrom: float = double()
    apical_cu_o_angstrom: float | None = double(nullable=True)
    n_apical: int = Field(description="0 (square planar), 1 (pyramid) or 2 (octahedron).")
    snapshot_run_id: int = Field(description="Latest ingest run visible when computed.")
    code_version: str
    created_at: datetime = timestamp()


class CuprateCalibration(SQLModel, table=True):
    """One fitted robust (Huber) model d_apical = alpha*c + beta*a + gamma for one cuprate family."""

    __tablename__ = "cuprate_calibration"

    id: int | None = Field(default=None, primary_key=True)
    family: str
    version: int = Field(description="Increases with each refit of the family.")
    alpha: float = double()
    beta: float = double()
    gamma: float = double()
    n_structures: int
    mae_angstrom: float = double()
    rmse_angstrom: float = double()
    snapshot_run_id: int = Field(description="Latest ingest run visible when fitted.")
    code_version: str
    created_at: datetime = timestamp()
