"""Relaxation trajectories as Parquet: one row per ionic step, arrays as Arrow lists (not JSON text).

Rows come from the current ``relaxation_step`` rows (MP task documents: ``matlake ingest mp tasks.json.gz``), each
linked to the ``initial`` and ``relaxed`` structure rows of the same material, dataset and calculation (task) id,
so that a model can be trained on pre-relaxation structures (IS2RE: initial structure -> relaxed energy) or on the
intermediate cells themselves (energies and forces of every step, as for machine-learned potentials).

Columns (feature set ``trajectories``, key ``relaxation_step_id``):

- ids: ``relaxation_step_id``, ``material_id``, ``source_record_id`` (e.g. ``mp-149``), ``calculation_id`` (the task
  id), ``initial_structure_id``, ``relaxed_structure_id`` (``structure.id``; null when the calculation has none);
- ``step_index`` (0-based, chronological across the task's relaxation runs), ``n_steps`` and ``is_final_step`` (of
  its calculation), ``n_sites``;
- ``energy_ev`` (total energy of the cell), ``energy_per_atom_ev``, ``final_energy_per_atom_ev`` (the last step of the
  same calculation: the relaxed energy), ``max_force_ev_per_a`` (largest force norm);
- arrays: ``forces_ev_per_a`` (n x 3, eV/A), ``stress_kbar`` (3 x 3, kbar, VASP sign convention), ``lattice``
  (3 x 3 rows, A), ``frac_coords`` (n x 3, fractional), ``species`` (n element symbols). In pyarrow the 3-vectors are
  ``fixed_size_list<double, 3>``; DuckDB reads them as lists (``forces_ev_per_a[1][3]``, 1-based);
  ``np.asarray(table["forces_ev_per_a"][i].values.flatten()).reshape(-1, 3)`` gives one step's forces;
- ``error``: null, or why an array of the step was unusable (it is then null; the rest of the row is kept).

(structure, energy) pairs in DuckDB, beside the tables (``features_trajectories`` is the view of the latest
version): the initial structure of every relaxation with its relaxed energy per atom,

    SELECT sc.structure_id, sc.source_record_id, sc.formula, sc.n_sites, t.final_energy_per_atom_ev
    FROM features_trajectories t
    JOIN structures_current sc ON sc.structure_id = t.initial_structure_id
    WHERE t.is_final_step;

and every intermediate cell with its own energy (the cell is in the feature row itself):

    SELECT t.relaxation_step_id, t.lattice, t.species, t.frac_coords, t.energy_per_atom_ev, sc.formula
    FROM features_trajectories t JOIN structures_current sc ON sc.structure_id = t.relaxed_structure_id;
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa

VEC3 = pa.list_(pa.float64(), 3)
MAT3 = pa.list_(VEC3, 3)

TRAJECTORY_SCHEMA = pa.schema([
    pa.field("relaxation_step_id", pa.int64(), nullable=False),
    pa.field("material_id", pa.int64(), nullable=False),
    pa.field("source_record_id", pa.string()),
    pa.field("calculation_id", pa.string(), nullable=False),
    pa.field("initial_structure_id", pa.int64()),
    pa.field("relaxed_structure_id", pa.int64()),
    pa.field("step_index", pa.int32(), nullable=False),
    pa.field("n_steps", pa.int32()),
    pa.field("is_final_step", pa.bool_()),
    pa.field("n_sites", pa.int32()),
    pa.field("energy_ev", pa.float64(), nullable=False),
    pa.field("energy_per_atom_ev", pa.float64(), nullable=False),
    pa.field("final_energy_per_atom_ev", pa.float64()),
    pa.field("max_force_ev_per_a", pa.float64()),
    pa.field("forces_ev_per_a", pa.list_(VEC3)),
    pa.field("stress_kbar", MAT3),
    pa.field("lattice", MAT3),
    pa.field("frac_coords", pa.list_(VEC3)),
    pa.field("species", pa.list_(pa.string())),
    pa.field("error", pa.string()),
])

INPUTS_SQL = """
WITH cur AS (
    SELECT rs.* FROM relaxation_step rs
    JOIN material m ON m.id = rs.material_id JOIN source s ON s.id = m.source_id
    WHERE rs.valid_to_run_id IS NULL {source_filter}
), calc AS (
    SELECT material_id, dataset, calculation_id, count(*) AS n_steps, max(step_index) AS last_step
    FROM cur GROUP BY material_id, dataset, calculation_id
), fin AS (
    SELECT c.material_id, c.dataset, c.calculation_id, c.n_steps, c.last_step,
        f.energy_per_atom_ev AS final_energy_per_atom_ev
    FROM calc c JOIN cur f ON f.material_id = c.material_id AND f.dataset = c.dataset
        AND f.calculation_id = c.calculation_id AND f.step_index = c.last_step
), st AS (
    SELECT material_id, dataset, calculation_id,
        min(CASE WHEN kind = 'initial' THEN id END) AS initial_id,
        min(CASE WHEN kind = 'relaxed' THEN id END) AS relaxed_id
    FROM structure WHERE valid_to_run_id IS NULL AND calculation_id IS NOT NULL
    GROUP BY material_id, dataset, calculation_id
)
SELECT cur.id, cur.material_id, m.source_record_id, cur.calculation_id, st.initial_id, st.relaxed_id,
    cur.step_index, fin.n_steps, fin.last_step, cur.energy_ev, cur.energy_per_atom_ev, fin.final_energy_per_atom_ev,
    cur.forces_ev_per_a, cur.stress_kbar, cur.lattice, cur.species, cur.frac_coords, cur.valid_from_run_id
FROM cur
JOIN material m ON m.id = cur.material_id
LEFT JOIN fin ON fin.material_id = cur.material_id AND fin.dataset = cur.dataset
    AND fin.calculation_id = cur.calculation_id
LEFT JOIN st ON st.material_id = cur.material_id AND st.dataset = cur.dataset AND st.calculation_id = cur.calculation_id
ORDER BY cur.id
"""
"""Inputs of the ``trajectories`` feature set: (key, payload..., valid_from_run_id), ``{source_filter}`` as usual."""


def _load(value: Any) -> Any:
    if isinstance(value, (str, bytes)):
        return orjson.loads(value)
    return value


def _rows_of(value: Any, n: int | None, what: str) -> list[list[float]] | None:
    """A list of ``n`` (any when None) finite 3-vectors, or None for a missing value; anything else raises."""
    if value is None:
        return None
    rows = [[float(x) for x in row] for row in value]
    if (n is not None and len(rows) != n) or any(len(r) != 3 for r in rows):
        shape = f"{len(rows)} x {sorted({len(r) for r in rows})}"
        raise ValueError(f"{what} has shape {shape}, expected {n if n is not None else 'n'} x 3")
    if not all(math.isfinite(x) for r in rows for x in r):
        raise ValueError(f"{what} has non-finite values")
    return rows


def trajectory_chunk(rows: Sequence[tuple]) -> pa.Table:
    """Input rows of :data:`INPUTS_SQL` (without the trailing run id) -> one Arrow row per ionic step."""
    cols: dict[str, list[Any]] = {f.name: [] for f in TRAJECTORY_SCHEMA}
    for (step_id, material_id, record_id, calc_id, initial_id, relaxed_id, step_index, n_steps, last_step,
         energy, energy_per_atom, final_energy, forces, stress, lattice, species, frac) in rows:
        problems = []
        species_list = [str(s) for s in _load(species) or []]
        n = len(species_list)
        arrays: dict[str, Any] = {}
        for name, raw, count in (("lattice", lattice, 3), ("frac_coords", frac, n), ("forces_ev_per_a", forces, n),
                                 ("stress_kbar", stress, 3)):
            try:
                arrays[name] = _rows_of(_load(raw), count, name)
            except (TypeError, ValueError) as exc:
                arrays[name] = None
                problems.append(str(exc))
        forces_rows = arrays["forces_ev_per_a"]
        cols["relaxation_step_id"].append(step_id)
        cols["material_id"].append(material_id)
        cols["source_record_id"].append(record_id)
        cols["calculation_id"].append(calc_id)
        cols["initial_structure_id"].append(initial_id)
        cols["relaxed_structure_id"].append(relaxed_id)
        cols["step_index"].append(step_index)
        cols["n_steps"].append(n_steps)
        cols["is_final_step"].append(None if last_step is None else step_index == last_step)
        cols["n_sites"].append(n)
        cols["energy_ev"].append(energy)
        cols["energy_per_atom_ev"].append(energy_per_atom)
        cols["final_energy_per_atom_ev"].append(final_energy)
        cols["max_force_ev_per_a"].append(
            max((math.sqrt(x * x + y * y + z * z) for x, y, z in forces_rows), default=None) if forces_rows else None
        )
        for name, value in arrays.items():
            cols[name].append(value)
        cols["species"].append(species_list)
        cols["error"].append("; ".join(problems) or None)
    return pa.Table.from_arrays([pa.array(cols[f.name], f.type) for f in TRAJECTORY_SCHEMA],
                                schema=TRAJECTORY_SCHEMA)
