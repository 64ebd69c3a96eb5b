"""Training data from the tables: labels of one property of one source as of a snapshot, joined to features.

Labels are read with the as-of filter, so a model records the run it read and its training set can be rebuilt
exactly later, whatever was ingested since.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from matlake import db
from matlake.errors import InputError
from matlake.schema.versioning import SNAPSHOT_SQL, as_of_sql


@dataclass(frozen=True, slots=True)
class LabelQuery:
    """Which labels to train on: a property of a source (optionally one dataset), as of an ingest run."""

    source: str
    property: str
    dataset: str | None = None
    as_of_run: int | None = None

    def as_dict(self) -> dict:
        return {"source": self.source, "property": self.property, "dataset": self.dataset,
                "as_of_run": self.as_of_run}


def latest_run(engine: sa.Engine) -> int:
    with db.connect(engine) as conn:
        return conn.execute(sa.text(SNAPSHOT_SQL)).scalar()


def load_labels(engine: sa.Engine, query: LabelQuery) -> pa.Table:
    """One row per labelled material: material_id, composition_id, formula, fractions (JSON), chemical_system,
    structure_id, value. Read as of ``query.as_of_run`` (default: the latest run, which is then recorded)."""
    run = query.as_of_run if query.as_of_run is not None else latest_run(engine)
    dataset_filter = "AND p.dataset = :dataset" if query.dataset else ""
    sql = f"""
        SELECT p.material_id, r.composition_id, c.formula, c.amounts, c.chemical_system, p.structure_id, p.value
        FROM property_value p
        JOIN material m ON m.id = p.material_id
        JOIN source s ON s.id = m.source_id
        JOIN material_revision r ON r.material_id = p.material_id AND r.dataset = p.dataset
        JOIN composition c ON c.id = r.composition_id
        WHERE s.name = :source AND p.property = :property {dataset_filter}
          AND {as_of_sql('p')} AND {as_of_sql('r')} AND r.status = 'active'
        ORDER BY p.material_id, p.id
    """
    params = {"source": query.source, "property": query.property, "as_of_run": run}
    if query.dataset:
        params["dataset"] = query.dataset
    with db.connect(engine) as conn:
        rows = conn.execute(sa.text(sql), params).all()
    if not rows:
        raise InputError(
            f"no labels for property {query.property!r} of source {query.source!r}"
            + (f" (dataset {query.dataset})" if query.dataset else "") + f" as of run {run}"
        )
    seen: set[int] = set()
    unique = []
    for r in rows:  # one label per material: the first property row (several structures may carry one each)
        if r.material_id not in seen:
            seen.add(r.material_id)
            unique.append(r)
    return pa.table({
        "material_id": pa.array([r.material_id for r in unique], pa.int64()),
        "composition_id": pa.array([r.composition_id for r in unique], pa.int64()),
        "formula": pa.array([r.formula for r in unique], pa.string()),
        "amounts": pa.array([_json_text(r.amounts) for r in unique], pa.string()),
        "chemical_system": pa.array([r.chemical_system for r in unique], pa.string()),
        "structure_id": pa.array([r.structure_id for r in unique], pa.int64()),
        "value": pa.array([float(r.value) for r in unique], pa.float64()),
    }).replace_schema_metadata({"as_of_run": str(run)})


def as_of_run_of(labels: pa.Table) -> int:
    return int(labels.schema.metadata[b"as_of_run"])


def amounts_of(labels: pa.Table) -> list[dict[str, float]]:
    return [json.loads(a) for a in labels.column("amounts").to_pylist()]


def join_features(labels: pa.Table, features: pa.Table, key: str = "composition_id") -> tuple[np.ndarray, list[str]]:
    """Feature matrix aligned with ``labels`` rows; a label without a feature row is a clear error."""
    names = [n for n in features.column_names if n != key]
    index = {k: i for i, k in enumerate(features.column(key).to_pylist())}
    wanted = labels.column(key).to_pylist()
    missing = [k for k in wanted if k not in index]
    if missing:
        raise InputError(
            f"{len(missing)} labelled rows have no features ({key} {missing[:5]}...): rebuild the feature set"
        )
    take = pa.array([index[k] for k in wanted], pa.int64())
    aligned = features.take(take)
    matrix = np.column_stack([aligned.column(n).to_numpy(zero_copy_only=False) for n in names]).astype(np.float64)
    return matrix, names


def filter_materials(labels: pa.Table, material_ids) -> pa.Table:
    return labels.filter(pc.is_in(labels.column("material_id"), value_set=pa.array(list(material_ids), pa.int64())))


def _json_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)
