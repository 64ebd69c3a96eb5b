"""Deep ensembles of Roost or Wren members trained as Dask tasks (a LocalCluster, or an existing scheduler by
address); workers return weights and metrics, this process writes the registry. One pipeline for both
architectures: Roost's inputs are the labels' compositions, Wren's the protostructure labels of their structures
(from the feature store; materials without a usable one are excluded and counted in the registry)."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import sqlalchemy as sa
from matlake.errors import InputError
from matlake.featurestore.runner import dask_client

from .data import LabelQuery, amounts_of, as_of_run_of, filter_materials, load_labels
from .ensemble_stats import combine_members
from .evaluation import uncertainty_metrics
from .metrics import regression_metrics
from .predict import PredictionInputs, PredictionOutput, predictor
from .protostructure_inputs import attach_protostructures, load_protostructures
from .registry import RegisteredModel, get_model, load_tensors, register_model
from .splits import Split, assert_disjoint
from .train import (PREDICT_BATCH, MemberResult, TrainConfig, model_from_state, model_inputs, predict_graphs,
                    resolve_train_device, train_member)


@dataclass(frozen=True)
class TrainedEnsemble:
    model: RegisteredModel
    metrics: dict[str, dict[str, float]]
    members: list[MemberResult]


def _member_task(train_comps, train_y, val_comps, val_y, config: TrainConfig, init_state) -> MemberResult:
    """Dask task: match torch's threads to the worker's threads, use its GPU when it has one."""
    try:
        from distributed import get_worker

        threads = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        threads = config.threads
    return train_member(train_comps, train_y, val_comps, val_y, replace(config, threads=config.threads or threads),
                        init_state)


def train_members(
    train_comps, train_y, val_comps, val_y, config: TrainConfig, n_members: int, *,
    scheduler: str | None = None, use_dask: bool = True, init_state: dict[str, np.ndarray] | None = None,
) -> list[MemberResult]:
    """Members with seeds ``config.seed + k``; on Dask when there is more than one (or a scheduler is given)."""
    configs = [replace(config, seed=config.seed + k) for k in range(n_members)]
    if not use_dask or (n_members == 1 and scheduler is None):
        return [train_member(train_comps, train_y, val_comps, val_y, c, init_state) for c in configs]
    with dask_client(scheduler, n_workers=min(n_members, 2)) as client:
        futures = [client.submit(_member_task, train_comps, train_y, val_comps, val_y, c, init_state, pure=False)
                   for c in configs]
        return client.gather(futures)


def ensemble_predict(
    members: list[dict[str, np.ndarray]], hparams: dict[str, Any], normaliser: dict[str, float],
    inputs, device: str = "cpu", architecture: str = "roost",
) -> dict[str, np.ndarray]:
    """Ensemble statistics for compositions (Roost) or protostructure labels (Wren); graphs are built once."""
    return combine_members(*member_predictions(members, hparams, normaliser, inputs, device, architecture))


def member_predictions(
    members: list[dict[str, np.ndarray]], hparams: dict[str, Any], normaliser: dict[str, float],
    inputs, device: str = "cpu", architecture: str = "roost",
) -> tuple[np.ndarray, np.ndarray]:
    """Every member's de-normalised means and aleatoric sigmas, (n_members, n) each, from one set of graphs."""
    graphs = model_inputs(architecture, inputs)
    dev = resolve_train_device(device)
    means, sigmas = [], []
    for state in members:
        model = model_from_state(architecture, state, hparams).to(dev)
        mu, sigma = predict_graphs(model, graphs, normaliser["mean"], normaliser["std"], dev,
                                   batch_size=PREDICT_BATCH[architecture])
        means.append(mu)
        sigmas.append(sigma)
    return np.stack(means), np.stack(sigmas)


def train_roost_ensemble(engine: sa.Engine, query: LabelQuery, split: Split, **kwargs: Any) -> TrainedEnsemble:
    """Train, evaluate and register a Roost ensemble (see :func:`train_ensemble`)."""
    return train_ensemble(engine, query, split, architecture="roost", **kwargs)


def train_wren_ensemble(engine: sa.Engine, query: LabelQuery, split: Split, **kwargs: Any) -> TrainedEnsemble:
    """Train, evaluate and register a Wren ensemble on the protostructure labels of the labelled structures."""
    return train_ensemble(engine, query, split, architecture="wren", **kwargs)


def _model_inputs(architecture: str, labels) -> list:
    return labels.column("protostructure").to_pylist() if architecture == "wren" else amounts_of(labels)


def train_ensemble(
    engine: sa.Engine,
    query: LabelQuery,
    split: Split,
    *,
    architecture: str = "roost",
    name: str,
    seed: int = 0,
    n_members: int = 1,
    epochs: int = 100,
    scheduler: str | None = None,
    use_dask: bool = True,
    init_from: str | int | None = None,
    config: TrainConfig | None = None,
    train_parts: tuple[str, ...] = ("train",),
    val_part: str = "val",
    eval_parts: tuple[str, ...] = ("test",),
    max_wyckoff: int | None = None,
) -> TrainedEnsemble:
    """Train, evaluate on every part and register an ensemble (transfer: ``init_from`` a registered model).

    ``architecture`` (roost or wren) overrides ``config.architecture``. For Wren, labelled materials whose
    structure has no usable protostructure row (or, with ``max_wyckoff``, one with that many Wyckoff positions
    or more) are excluded; the counts per reason and part are stored as ``model_metric`` rows (metric
    ``excluded_<reason>``) and in the model's hyper-parameters."""
    assert_disjoint(split, [*train_parts, val_part, *eval_parts])
    labels = load_labels(engine, query)
    feature_sets = [{"name": f"element_embedding:{(config.embedding if config else 'matscholar200')}", "version": 1}]
    excluded: dict[str, dict[str, int]] = {}
    rows: list[dict[str, Any]] = []
    if architecture == "wren":
        from matlake.featurestore.wyckoff_embedding import TABLE_VERSION

        lookup = load_protostructures(engine, source=query.source, as_of_run=as_of_run_of(labels),
                                      max_wyckoff=max_wyckoff)
        all_labels = labels
        labels, _ = attach_protostructures(labels, lookup)
        feature_sets += [*lookup.feature_sets, {"name": "wyckoff_embedding", "version": TABLE_VERSION}]
        for part in split.parts:
            _, counts = attach_protostructures(filter_materials(all_labels, split.material_ids(part)), lookup)
            excluded[part] = counts
            rows += [{"part": part, "metric": f"excluded_{reason}", "value": n} for reason, n in counts.items()]
    train = filter_materials(labels, [m for p in train_parts for m in split.material_ids(p)])
    val = filter_materials(labels, split.material_ids(val_part)) if val_part in split.parts else train.slice(0, 0)
    if train.num_rows == 0:
        raise InputError(f"no usable training rows for {architecture} (excluded: {excluded})")
    config = replace(config or TrainConfig(epochs=epochs, seed=seed), architecture=architecture)
    init_state = None
    parent = None
    if init_from is not None:
        parent = get_model(engine, init_from)
        if parent.architecture != architecture:
            raise InputError(f"cannot start a {architecture} model from {parent.label}, a {parent.architecture} model")
        tensors = load_tensors(parent)
        init_state = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("member0.")}
    started = time.perf_counter()
    members = train_members(_model_inputs(architecture, train), train.column("value").to_pylist(),
                            _model_inputs(architecture, val), val.column("value").to_pylist(), config, n_members,
                            scheduler=scheduler, use_dask=use_dask, init_state=init_state)
    seconds = time.perf_counter() - started
    states = [m.state for m in members]
    hparams, normaliser = members[0].hparams, members[0].normaliser
    metrics: dict[str, dict[str, float]] = {}
    for part in (*train_parts, val_part, *eval_parts):
        if part not in split.parts:
            continue
        part_labels = filter_materials(labels, split.material_ids(part))
        if part_labels.num_rows == 0:
            continue
        means, sigmas = member_predictions(states, hparams, normaliser, _model_inputs(architecture, part_labels),
                                           architecture=architecture)
        stats = combine_members(means, sigmas)
        y = part_labels.column("value").to_numpy()
        metrics[part] = {**regression_metrics(y, stats["mean"], stats["total_std"]),
                         **uncertainty_metrics(y, stats["mean"], stats["total_std"])}
        rows += [{"part": part, "metric": k, "value": v} for k, v in metrics[part].items() if np.isfinite(v)]
        if n_members > 1:
            for k, member_mean in enumerate(means):
                rows.append({"part": part, "metric": "mae", "member": k,
                             "value": regression_metrics(y, member_mean)["mae"]})
    tensors = {f"member{k}.{key}": value for k, state in enumerate(states) for key, value in state.items()}
    model = register_model(
        engine, name=name, architecture=architecture,
        hyperparameters={**hparams, "train": config.as_dict(), "n_members": n_members,
                         **({"excluded": excluded, "max_wyckoff": max_wyckoff} if architecture == "wren"
                            else {})},
        tensors=tensors, target_property=query.property, target_source=query.source,
        snapshot_run_id=as_of_run_of(labels), split_id=split.id, feature_sets=feature_sets,
        normaliser={**normaliser, "label_query": query.as_dict()}, n_members=n_members, metrics=rows,
        parent_model_id=parent.id if parent else None, train_seconds=seconds, device=members[0].device,
    )
    return TrainedEnsemble(model, metrics, members)


def member_states(tensors: dict[str, np.ndarray], n_members: int) -> list[dict[str, np.ndarray]]:
    return [{k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"member{i}.")}
            for i in range(n_members)]


def _predict_members(model: RegisteredModel, tensors, inputs: list, device: str) -> PredictionOutput:
    hparams = {k: v for k, v in model.hyperparameters.items()
               if k not in ("train", "n_members", "excluded", "max_wyckoff")}
    stats = ensemble_predict(member_states(tensors, model.n_members), hparams, model.normaliser, inputs, device,
                             architecture=model.architecture)
    epistemic = stats["epistemic_std"] if model.n_members > 1 else None
    return PredictionOutput(stats["mean"], stats["aleatoric_std"], epistemic)


@predictor("roost")
def _predict_roost(model: RegisteredModel, tensors, inputs: PredictionInputs, device: str) -> PredictionOutput:
    return _predict_members(model, tensors, inputs.amounts, device)


@predictor("wren", needs_protostructures=True)
def _predict_wren(model: RegisteredModel, tensors, inputs: PredictionInputs, device: str) -> PredictionOutput:
    if inputs.protostructures is None or any(p is None for p in inputs.protostructures):
        raise InputError("Wren predicts protostructure labels: every input needs one")
    return _predict_members(model, tensors, inputs.protostructures, device)
