"""One ionic step of a VASP calculation in a task document -> a relaxation step (energy, cell, forces, stress)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..records import RecordRejected, RelaxationStepData
from .values import check_symbols, number


def step_energy(step: Mapping[str, Any]) -> Any:
    """The step's total energy: ``e_wo_entrp`` (what MP reports as a task's energy), else ``e_fr_energy``."""
    for name in ("e_wo_entrp", "e_fr_energy", "e_0_energy"):
        value = step.get(name)
        if value is not None and value != 0.0:
            return value
    return step.get("e_wo_entrp", step.get("e_fr_energy"))


def ionic_step(step: Any, task_id: str, index: int, key: str) -> RelaxationStepData:
    """Step ``index`` of task ``task_id``; an unreadable step, structure or matrix rejects the record ``key``."""
    if not isinstance(step, Mapping):
        raise RecordRejected("unreadable_step", f"{key}: ionic step {index} of {task_id} is not an object", key)
    energy = number(step_energy(step), f"energy of ionic step {index} of {task_id}", key)
    lattice, species, frac = _plain_structure(step.get("structure"), f"ionic step {index} of {task_id}", key)
    n = len(species)
    forces = _matrix(step.get("forces"), n, f"forces of step {index} of {task_id}", key)
    stress = _matrix(step.get("stress"), 3, f"stress of step {index} of {task_id}", key)
    return RelaxationStepData(calculation_id=task_id, step_index=index, energy_ev=energy, n_sites=n, lattice=lattice,
                              species=species, frac_coords=frac, forces_ev_per_a=forces, stress_kbar=stress)


def _plain_structure(d: Any, what: str, key: str):
    """Lattice, species and fractional coordinates straight from a structure dict (ordered sites only)."""
    if not isinstance(d, Mapping) or not isinstance(d.get("sites"), list) or not d["sites"]:
        raise RecordRejected("missing_structure", f"{key}: no structure for {what}", key)
    try:
        lattice = np.array(d["lattice"]["matrix"], dtype=float)
        species = [str(site["species"][0]["element"]) for site in d["sites"]]
        if any(len(site["species"]) != 1 for site in d["sites"]):
            raise ValueError("disordered site in an ionic step")
        if all("abc" in site for site in d["sites"]):
            frac = np.array([site["abc"] for site in d["sites"]], dtype=float)
        else:
            frac = np.linalg.solve(lattice.T, np.array([site["xyz"] for site in d["sites"]], dtype=float).T).T
    except (KeyError, IndexError, TypeError, ValueError, np.linalg.LinAlgError) as exc:
        raise RecordRejected("unreadable_structure", f"{key}: {what}: {type(exc).__name__}: {exc}", key) from None
    check_symbols(species, key)
    if lattice.shape != (3, 3) or frac.shape != (len(species), 3):
        raise RecordRejected("unreadable_structure", f"{key}: {what}: lattice {lattice.shape}, coords {frac.shape}",
                             key)
    if not (np.isfinite(lattice).all() and np.isfinite(frac).all()):
        raise RecordRejected("non_finite_value", f"{key}: {what} has non-finite lattice or coordinates", key)
    volume = float(np.linalg.det(lattice))
    if not volume > 0:
        raise RecordRejected("non_positive_volume", f"{key}: {what} has cell volume {volume:.4g} A^3", key)
    return lattice.tolist(), species, frac.tolist()


def _matrix(value: Any, rows: int, what: str, key: str) -> list[list[float]] | None:
    if value is None:
        return None
    try:
        arr = np.array(value, dtype=float)
    except (TypeError, ValueError):
        raise RecordRejected("unreadable_step", f"{key}: {what} is not a numeric matrix", key) from None
    if arr.shape != (rows, 3):
        raise RecordRejected("inconsistent_shape", f"{key}: {what} has shape {arr.shape}, expected ({rows}, 3)", key)
    if not np.isfinite(arr).all():
        raise RecordRejected("non_finite_value", f"{key}: {what} has non-finite values", key)
    return arr.tolist()
