"""Wren's inputs from the feature store: the protostructure label of each labelled structure.

A material whose structure has no valid protostructure row (no structure at all, a structure the feature
set has not labelled, a failed symmetry search, multiplicities that do not add up to the composition, or a
label Wren cannot embed) is excluded and counted by reason, as is, when asked, one with too many Wyckoff
positions (the thesis kept fewer than 16: Wren's cost grows with the square of the positions); the counts travel with the model and the
prediction run, so nothing is dropped silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import sqlalchemy as sa

from matlake import db
from matlake.config import get_settings
from matlake.errors import InputError

from .wyckoff_graphs import ProtostructureLabelError, check_protostructure

if TYPE_CHECKING:
    from matlake.featurestore.store import FeatureStore

FEATURE_SET = "protostructure"
EXCLUSION_REASONS = ("no_structure", "no_protostructure_row", "invalid_protostructure", "label_not_usable",
                     "too_many_wyckoff_positions")
# which of a material's current structures stands for it when a selection names materials only
_KIND_PREFERENCE = "CASE kind WHEN 'relaxed' THEN 0 WHEN 'experimental' THEN 1 WHEN 'prototype' THEN 2 ELSE 3 END"


@dataclass(frozen=True)
class ProtostructureLookup:
    """structure_id -> usable label, the ids whose row is unusable (with why), and the feature sets read."""

    labels: dict[int, str]
    unusable: dict[int, str]
    feature_sets: list[dict[str, Any]] = field(default_factory=list)

    def reason(self, structure_id: int | None) -> str | None:
        """None when the structure has a usable label, else the exclusion reason."""
        if structure_id is None:
            return "no_structure"
        if structure_id in self.labels:
            return None
        return self.unusable.get(structure_id, "no_protostructure_row")


def load_protostructures(engine: sa.Engine, *, source: str | None = None, as_of_run: int | None = None,
                         store: FeatureStore | None = None, max_wyckoff: int | None = None) -> ProtostructureLookup:
    """The protostructure feature set: the ``source`` partition if built, else ``all`` (as of ``as_of_run``
    when given, so labels and inputs come from the same point in time); without ``source``, the newest
    version of every partition. ``max_wyckoff``: labels with that many Wyckoff positions or more are unusable
    (the thesis' cleaning rule is 16)."""
    from matlake.featurestore.protostructure import count_wyckoff_positions
    from matlake.featurestore.store import FeatureStore

    store = store or FeatureStore(get_settings().resolved_feature_store, engine)
    if source is not None:
        candidates = [store.as_of(FEATURE_SET, as_of_run, p) if as_of_run is not None else store.latest(FEATURE_SET, p)
                      for p in (source, "all")]
        infos = [next((c for c in candidates if c is not None), None)]
    else:
        infos = store.latest_all(FEATURE_SET)
    infos = [i for i in infos if i is not None]
    if not infos:
        where = (f"source {source!r}" if source else "any source") + (
            f" built from a snapshot no later than run {as_of_run}" if as_of_run is not None and source else "")
        raise InputError(f"no protostructure feature set for {where}: run `matlake features build protostructure"
                         + (f" --source {source}`" if source else "`") + " first")
    labels: dict[int, str] = {}
    unusable: dict[int, str] = {}
    for info in infos:
        table = store.read(info, columns=["structure_id", "protostructure", "is_valid", "error"])
        for sid, label, valid, error in zip(*(table.column(c).to_pylist() for c in table.column_names)):
            if label is None or error is not None or not valid:
                unusable[sid] = "invalid_protostructure"
                continue
            try:
                checked = check_protostructure(label)
            except ProtostructureLabelError:
                unusable[sid] = "label_not_usable"
                continue
            if max_wyckoff is not None and count_wyckoff_positions(checked) >= max_wyckoff:
                unusable[sid] = "too_many_wyckoff_positions"
            else:
                labels[sid] = checked
    return ProtostructureLookup(labels, unusable, [
        {"name": i.name, "version": i.version, "partition": i.partition,
         "parameters": {k: v for k, v in i.parameters.items() if k in ("symprec", "angle_tolerance", "backend")}}
        for i in infos])


def attach_protostructures(labels: pa.Table, lookup: ProtostructureLookup) -> tuple[pa.Table, dict[str, int]]:
    """The rows of ``labels`` that have a usable label, with a ``protostructure`` column, and the number of
    excluded rows per reason (every reason present, zeros included)."""
    reasons = [lookup.reason(sid) for sid in labels.column("structure_id").to_pylist()]
    keep = pa.array([r is None for r in reasons])
    kept = labels.filter(keep)
    kept = kept.append_column("protostructure", pa.array(
        [lookup.labels[sid] for sid in kept.column("structure_id").to_pylist()], pa.string()))
    counts = Counter(r for r in reasons if r is not None)
    return kept.replace_schema_metadata(labels.schema.metadata), {r: counts.get(r, 0) for r in EXCLUSION_REASONS}


def structures_of_materials(engine: sa.Engine, material_ids: list[int | None]) -> dict[int, int]:
    """material_id -> the current structure that stands for it (relaxed, else experimental, prototype, initial;
    lowest id first); materials without a structure are absent."""
    wanted = sorted({m for m in material_ids if m is not None})
    found: dict[int, int] = {}
    with db.connect(engine) as conn:
        for start in range(0, len(wanted), 5000):
            stmt = sa.text(
                f"SELECT material_id, id FROM structure WHERE valid_to_run_id IS NULL AND material_id IN :ids "
                f"ORDER BY material_id, {_KIND_PREFERENCE}, id"
            ).bindparams(sa.bindparam("ids", expanding=True))
            for material_id, structure_id in conn.execute(stmt, {"ids": wanted[start:start + 5000]}).all():
                found.setdefault(material_id, structure_id)
    return found

