"""Data splits stored as rows (``dataset_split`` + ``split_member``), so a model's training set is a table.

Strategies: ``random`` (rows), grouped ``composition`` / ``chemical_system`` / ``protostructure`` (every member of a
group lands in one part), and ``kfold`` (the matbench protocol: scikit-learn KFold with shuffling, parts fold_k).
Training asserts that parts are disjoint by the grouping key before it starts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from matlake import db
from matlake.errors import InputError
from matlake.schema.columns import utcnow

from .data import as_of_run_of

STRATEGIES = ("random", "composition", "chemical_system", "protostructure", "kfold")


class SplitLeakError(InputError):
    """Two parts of a split share a group key: training on it would leak test data."""


@dataclass(frozen=True, slots=True)
class Split:
    id: int
    name: str
    strategy: str
    seed: int
    parts: dict[str, list[int]]
    """part name -> material ids"""
    groups: dict[int, str]
    """material id -> group key"""

    def material_ids(self, part: str) -> list[int]:
        try:
            return self.parts[part]
        except KeyError:
            raise InputError(f"split {self.name} has no part {part!r} (parts: {', '.join(sorted(self.parts))})") from None


def group_keys(labels: pa.Table, strategy: str, protostructures: dict[int, str] | None = None) -> list[str]:
    """The key that keeps related rows together for ``strategy``."""
    if strategy in ("random", "kfold"):
        return [str(m) for m in labels.column("material_id").to_pylist()]
    if strategy == "composition":
        return labels.column("formula").to_pylist()
    if strategy == "chemical_system":
        return labels.column("chemical_system").to_pylist()
    if strategy == "protostructure":
        if protostructures is None:
            raise InputError("a protostructure split needs protostructure labels (build the protostructure features)")
        keys = []
        for sid in labels.column("structure_id").to_pylist():
            if sid not in protostructures:
                raise InputError(f"structure {sid} has no protostructure label")
            keys.append(protostructures[sid])
        return keys
    raise InputError(f"unknown split strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")


def assign_parts(
    keys: Sequence[str], strategy: str, *, seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    n_folds: int = 5,
) -> list[str]:
    """Part of each row: groups are shuffled with ``seed`` and filled in order until each part's share is met."""
    if strategy == "kfold":
        from sklearn.model_selection import KFold

        parts = [""] * len(keys)
        for k, (_, test) in enumerate(KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(keys)):
            for i in test:
                parts[i] = f"fold_{k}"
        return parts
    if abs(sum(fractions) - 1) > 1e-9 or any(f < 0 for f in fractions):
        raise InputError(f"split fractions {fractions} must be non-negative and sum to 1")
    unique = sorted(set(keys))
    order = np.random.default_rng(seed).permutation(len(unique))
    sizes: dict[str, int] = {}
    for k in keys:
        sizes[k] = sizes.get(k, 0) + 1
    n = len(keys)
    bounds = (fractions[0] * n, (fractions[0] + fractions[1]) * n)
    assigned: dict[str, str] = {}
    filled = 0
    for idx in order:
        key = unique[idx]
        assigned[key] = "train" if filled < bounds[0] else ("val" if filled < bounds[1] else "test")
        filled += sizes[key]
    return [assigned[k] for k in keys]


def create_split(
    engine: sa.Engine,
    name: str,
    labels: pa.Table,
    *,
    strategy: str = "random",
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    n_folds: int = 5,
    protostructures: dict[int, str] | None = None,
    parameters: dict | None = None,
) -> Split:
    """Assign every labelled material to a part and store the split; a name can be used once."""
    keys = group_keys(labels, strategy, protostructures)
    parts = assign_parts(keys, strategy, seed=seed, fractions=fractions, n_folds=n_folds)
    material_ids = labels.column("material_id").to_pylist()
    with db.connect(engine) as conn:
        if conn.execute(sa.text("SELECT count(*) FROM dataset_split WHERE name = :n"), {"n": name}).scalar():
            raise InputError(f"a split named {name!r} exists already: choose another name")
        split_id = conn.execute(
            sa.text(
                "INSERT INTO dataset_split (name, strategy, seed, parameters, snapshot_run_id, n_members, created_at) "
                "VALUES (:n, :st, :seed, :p, :snap, :m, :now) RETURNING id"
            ),
            {"n": name, "st": strategy, "seed": seed, "snap": as_of_run_of(labels), "m": len(material_ids),
             "now": utcnow(), "p": json.dumps({"fractions": list(fractions), "n_folds": n_folds, **(parameters or {})})},
        ).scalar()
        db.bulk_insert(conn, "split_member", pa.table({
            "split_id": pa.array([split_id] * len(material_ids), pa.int64()),
            "material_id": pa.array(material_ids, pa.int64()),
            "part": pa.array(parts, pa.string()),
            "group_key": pa.array(keys, pa.string()),
        }))
    return load_split(engine, split_id)


def load_split(engine: sa.Engine, split: int | str) -> Split:
    column = "id" if isinstance(split, int) else "name"
    with db.connect(engine) as conn:
        head = conn.execute(sa.text(f"SELECT id, name, strategy, seed FROM dataset_split WHERE {column} = :v"),
                            {"v": split}).first()
        if head is None:
            raise InputError(f"no split {split!r}")
        rows = db.fetch_pairs(conn, "SELECT material_id, part, group_key FROM split_member WHERE split_id = :s "
                                    "ORDER BY id", {"s": head.id})
    parts: dict[str, list[int]] = {}
    groups: dict[int, str] = {}
    for material_id, part, key in rows:
        parts.setdefault(part, []).append(material_id)
        groups[material_id] = key
    return Split(head.id, head.name, head.strategy, head.seed, parts, groups)


def assert_disjoint(split: Split, parts: Sequence[str]) -> None:
    """Refuse to train when two parts share a material or (for grouped splits) a group key."""
    seen: dict[str, str] = {}
    for part in parts:
        for material_id in split.material_ids(part):
            key = split.groups[material_id] if split.strategy not in ("random", "kfold") else str(material_id)
            other = seen.setdefault(key, part)
            if other != part:
                raise SplitLeakError(
                    f"split {split.name}: {split.strategy} group {key!r} is in both {other} and {part}"
                )
