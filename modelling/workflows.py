"""End-to-end training used by the CLI and the demo: labels -> split -> model -> registry."""

from __future__ import annotations

import sqlalchemy as sa

from matlake import db
from matlake.errors import InputError

from .data import LabelQuery, load_labels
from .splits import create_split, load_split


def ensure_split(engine: sa.Engine, name: str, query: LabelQuery, strategy: str, seed: int):
    """The named split, created over the query's labels when it does not exist yet."""
    try:
        return load_split(engine, name)
    except InputError:
        labels = load_labels(engine, query)
        groups = _protostructure_groups(engine, query, labels) if strategy == "protostructure" else None
        return create_split(engine, name, labels, strategy=strategy, seed=seed, protostructures=groups,
                            parameters={"label_query": query.as_dict()})


def _protostructure_groups(engine: sa.Engine, query: LabelQuery, labels) -> dict:
    """structure_id -> canonical protostructure for a grouped split; rows Wren would exclude get their own keys
    (one per unusable structure, one for all rows without a structure) so the split still covers every label."""
    from matlake.featurestore.protostructure import canonical_protostructure

    from .data import as_of_run_of
    from .protostructure_inputs import load_protostructures

    lookup = load_protostructures(engine, source=query.source, as_of_run=as_of_run_of(labels))
    groups: dict = {None: "no-structure"}
    for sid in labels.column("structure_id").to_pylist():
        if sid is not None:
            label = lookup.labels.get(sid)
            groups[sid] = canonical_protostructure(label) if label else f"no-protostructure-{sid}"
    return groups


def train(
    architecture: str,
    *,
    source: str,
    property: str,
    split_name: str,
    name: str | None = None,
    strategy: str = "random",
    seed: int = 0,
    dataset: str | None = None,
    as_of: int | None = None,
    members: int = 1,
    epochs: int = 100,
    scheduler: str | None = None,
    max_wyckoff: int | None = None,
    hparams: str | None = None,
    engine: sa.Engine | None = None,
) -> str:
    """Train and register a model; ``hparams`` is a JSON object of architecture hyper-parameters (roost, wren)."""
    engine = engine or db.create_engine()
    query = LabelQuery(source=source, property=property, dataset=dataset, as_of_run=as_of)
    split = ensure_split(engine, split_name, query, strategy, seed)
    name = name or f"{architecture}-{source}-{property}"
    if architecture in ("rf", "random_forest"):
        from .baselines import train_random_forest

        result = train_random_forest(engine, query, split, name=name, seed=seed)
        return _describe(result.model.label, result.metrics)
    if architecture in ("roost", "wren"):
        from .ensemble import train_ensemble
        from .train import TrainConfig, parse_hparams

        config = TrainConfig(epochs=epochs, seed=seed, hparams=parse_hparams(architecture, hparams))
        result = train_ensemble(engine, query, split, architecture=architecture, name=name, config=config,
                                n_members=members, scheduler=scheduler,
                                **({"max_wyckoff": max_wyckoff} if architecture == "wren" else {}))
        return _describe(result.model.label, result.metrics, result.model.hyperparameters.get("excluded"))
    raise InputError(f"unknown architecture {architecture!r}: use rf, roost or wren")


def _describe(label: str, metrics: dict[str, dict[str, float]],
              excluded: dict[str, dict[str, int]] | None = None) -> str:
    parts = ", ".join(f"{part} MAE {m['mae']:.4g} (n={int(m['n'])})" for part, m in metrics.items())
    totals: dict[str, int] = {}
    for counts in (excluded or {}).values():  # per part -> per reason
        for reason, n in counts.items():
            totals[reason] = totals.get(reason, 0) + n
    left_out = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in totals.items() if n)
    note = f"; excluded {left_out}" if left_out else ""
    return f"registered {label}: {parts}{note}"
