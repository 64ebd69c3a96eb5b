"""Feature-set definitions and the build procedure: read inputs from the tables, compute only what changed,
write Parquet parts (on Dask or in-process), register one new version.

A definition names its key column, the SQL that selects its inputs (current rows, optionally one source), and a
picklable chunk function that turns input rows into an Arrow table keyed like the inputs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from matlake import db
from matlake.schema.versioning import SNAPSHOT_SQL
from matlake.errors import InputError

from .protostructure import protostructure_chunk, structure_from_json
from .runner import dask_client, run_chunks
from .store import FeatureSetInfo, FeatureStore, write_part
from .trajectories import INPUTS_SQL as _TRAJECTORY_INPUTS_SQL, trajectory_chunk


@dataclass(frozen=True)
class FeatureSetDefinition:
    name: str
    key: str
    inputs_sql: str
    """SELECT returning (key, payload columns..., valid_from_run_id); ``{source_filter}`` restricts to :source."""
    compute: Callable[[Sequence[tuple]], pa.Table]
    parameters: dict[str, Any] = field(default_factory=dict)
    libraries: tuple[str, ...] = ()
    chunk_size: int = 5000


# ---- chunk functions (module level: Dask pickles them by reference) ----------------------------------------------


def magpie_chunk(rows: Sequence[tuple]) -> pa.Table:
    from .magpie import magpie_table

    keys = [r[0] for r in rows]
    amounts = [_json(r[1]) for r in rows]
    return magpie_table(amounts, keys, key_name="composition_id")


structure_from_row = structure_from_json  # a pymatgen Structure from the JSON columns of a ``structure`` row


# ---- definitions --------------------------------------------------------------------------------------------------

_SOURCE_FILTER = "AND s.name = :source"

DEFINITIONS: dict[str, FeatureSetDefinition] = {
    "magpie": FeatureSetDefinition(
        name="magpie",
        key="composition_id",
        inputs_sql=(
            "SELECT c.id, c.amounts, u.first_run FROM composition c JOIN ("
            "SELECT r.composition_id, min(r.valid_from_run_id) AS first_run FROM material_revision r "
            "JOIN material m ON m.id = r.material_id JOIN source s ON s.id = m.source_id "
            "WHERE r.valid_to_run_id IS NULL AND r.status = 'active' {source_filter} GROUP BY r.composition_id"
            ") u ON u.composition_id = c.id ORDER BY c.id"
        ),
        compute=magpie_chunk,
        parameters={"featurizers": ["Stoichiometry()", 'ElementProperty.from_preset("magpie")',
                                    'ValenceOrbital(props=["frac"])', "IonProperty(fast=True)"]},
        libraries=("matminer", "pymatgen"),
        chunk_size=20000,
    ),
    "protostructure": FeatureSetDefinition(
        name="protostructure",
        key="structure_id",
        inputs_sql=(
            # as text: decoding the JSON is the workers' job (in parallel), and strings pickle 50x faster
            "SELECT st.id, CAST(st.lattice AS TEXT), CAST(st.species AS TEXT), CAST(st.frac_coords AS TEXT), "
            "st.valid_from_run_id "
            "FROM structure st JOIN material m ON m.id = st.material_id "
            "JOIN source s ON s.id = m.source_id WHERE st.valid_to_run_id IS NULL {source_filter} ORDER BY st.id"
        ),
        compute=protostructure_chunk,  # in its light module, reading rows without pymatgen
        parameters={"symprec": 0.1, "angle_tolerance": 5.0, "backend": "moyopy"},
        libraries=("pymatgen", "moyopy", "spglib"),
        chunk_size=500,
    ),
    "trajectories": FeatureSetDefinition(
        name="trajectories",
        key="relaxation_step_id",
        inputs_sql=_TRAJECTORY_INPUTS_SQL,
        compute=trajectory_chunk,  # its own light module: workers import only pyarrow and orjson
        parameters={"arrays": "arrow lists", "structures": "initial and relaxed of the same calculation_id"},
        libraries=("pyarrow",),
        chunk_size=5000,
    ),
}


def definition(name: str) -> FeatureSetDefinition:
    try:
        return DEFINITIONS[name]
    except KeyError:
        raise InputError(f"unknown feature set {name!r}: known are {', '.join(sorted(DEFINITIONS))}") from None


def build_feature_set(
    name: str,
    *,
    engine: sa.Engine,
    store: FeatureStore,
    source: str | None = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    use_dask: bool = True,
    incremental: bool = True,
    chunk_size: int | None = None,
) -> FeatureSetInfo:
    """Build a new version of ``name`` over the current inputs (of one ``source``, else all)."""
    spec = definition(name)
    partition = source or "all"
    with db.connect(engine) as conn:
        db.check_schema(conn)
        snapshot = conn.execute(sa.text(SNAPSHOT_SQL)).scalar()
        if source is not None and conn.execute(sa.text("SELECT count(*) FROM source WHERE name = :s"),
                                               {"s": source}).scalar() == 0:
            raise InputError(f"no source named {source!r} has been ingested")
        sql = spec.inputs_sql.format(source_filter=_SOURCE_FILTER if source else "")
        inputs = [tuple(r) for r in conn.execute(sa.text(sql), {"source": source} if source else {}).all()]
    previous = store.latest(name, partition) if incremental else None
    pending, reused, carried = _plan(spec, inputs, previous, store)
    if previous is not None and not pending and carried is None and _same_settings(previous, spec, source):
        return previous  # nothing changed since the registered version: no new version
    staging = store.staging_dir()
    items = [r[:-1] for r in pending]
    chunk_size = chunk_size or spec.chunk_size
    if use_dask and (len(items) > chunk_size or scheduler):
        with dask_client(scheduler, n_workers) as client:
            parts = run_chunks(spec.compute, items, staging, chunk_size=chunk_size, client=client)
    else:
        parts = run_chunks(spec.compute, items, staging, chunk_size=chunk_size)
    if carried is not None:
        parts.insert(0, write_part(staging, carried, stem="carried"))
    return store.register(
        name, parts, partition=partition, reused=reused, snapshot_run_id=snapshot,
        input_runs=[r[-1] for r in inputs],
        parameters={**spec.parameters, "source": source, "incremental_from": previous.version if previous else None,
                    "computed_rows": len(items)},
        library_versions=_versions(spec.libraries),
    )


def _plan(spec: FeatureSetDefinition, inputs: list[tuple], previous: FeatureSetInfo | None, store: FeatureStore):
    """Which inputs need computing; which previous files can be reused as they are, or which rows carried over."""
    if previous is None or previous.row_count == 0:
        return inputs, [], None
    old_keys = set(store.read(previous, columns=[spec.key]).column(spec.key).to_pylist())
    wanted = {r[0] for r in inputs}
    pending = [r for r in inputs if r[0] not in old_keys]
    if old_keys <= wanted:
        return pending, previous.files, None
    old = store.read(previous)  # some rows are gone: carry the rest over into a new part
    keep = old.filter(pc.is_in(old.column(spec.key), value_set=pa.array(sorted(old_keys & wanted))))
    return pending, [], keep


def _same_settings(previous: FeatureSetInfo, spec: FeatureSetDefinition, source: str | None) -> bool:
    bookkeeping = {"source", "incremental_from", "computed_rows"}
    stored = {k: v for k, v in previous.parameters.items() if k not in bookkeeping}
    return stored == spec.parameters and previous.parameters.get("source") == source


def _versions(libraries: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for lib in libraries:
        try:
            found[lib] = version(lib)
        except PackageNotFoundError:
            continue
    return found


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
