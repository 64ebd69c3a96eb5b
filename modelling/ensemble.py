"""Deep ensembles of Roost members trained as Dask tasks (a LocalCluster, or an existing scheduler by address);
workers return weights and metrics, this process writes the registry."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import sqlalchemy as sa
import torch

from matlake.featurestore.runner import dask_client

from .batching import CompositionGraphs
from .data import LabelQuery, amounts_of, as_of_run_of, filter_materials, load_labels
from .ensemble_stats import combine_members
from .metrics import regression_metrics
from .models.roost import Roost
from .predict import PredictionInputs, PredictionOutput, predictor
from .registry import RegisteredModel, get_model, load_tensors, register_model
from .splits import Split, assert_disjoint
from .train import MemberResult, TrainConfig, element_table, predict_graphs, resolve_train_device, train_member


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
    compositions, device: str = "cpu",
) -> dict[str, np.ndarray]:
    _, index = element_table()
    graphs = CompositionGraphs.from_compositions(compositions, index)
    dev = resolve_train_device(device)
    means, sigmas = [], []
    for state in members:
        model = Roost(torch.from_numpy(np.array(state["elem_embedding"])), **hparams)
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
        model.to(dev)
        mu, sigma = predict_graphs(model, graphs, normaliser["mean"], normaliser["std"], dev)
        means.append(mu)
        sigmas.append(sigma)
    return combine_members(np.stack(means), np.stack(sigmas))


def train_roost_ensemble(
    engine: sa.Engine,
    query: LabelQuery,
    split: Split,
    *,
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
) -> TrainedEnsemble:
    """Train, evaluate on every part and register a Roost ensemble (transfer: ``init_from`` a registered model)."""
    assert_disjoint(split, [*train_parts, val_part, *eval_parts])
    labels = load_labels(engine, query)
    train = filter_materials(labels, [m for p in train_parts for m in split.material_ids(p)])
    val = filter_materials(labels, split.material_ids(val_part)) if val_part in split.parts else train.slice(0, 0)
    config = config or TrainConfig(epochs=epochs, seed=seed)
    init_state = None
    parent = None
    if init_from is not None:
        parent = get_model(engine, init_from)
        tensors = load_tensors(parent)
        init_state = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("member0.")}
    started = time.perf_counter()
    members = train_members(amounts_of(train), train.column("value").to_pylist(), amounts_of(val),
                            val.column("value").to_pylist(), config, n_members, scheduler=scheduler,
                            use_dask=use_dask, init_state=init_state)
    seconds = time.perf_counter() - started
    states = [m.state for m in members]
    hparams, normaliser = members[0].hparams, members[0].normaliser
    metrics: dict[str, dict[str, float]] = {}
    rows: list[dict[str, Any]] = []
    for part in (*train_parts, val_part, *eval_parts):
        if part not in split.parts:
            continue
        part_labels = filter_materials(labels, split.material_ids(part))
        if part_labels.num_rows == 0:
            continue
        stats = ensemble_predict(states, hparams, normaliser, amounts_of(part_labels))
        y = part_labels.column("value").to_numpy()
        metrics[part] = regression_metrics(y, stats["mean"], stats["total_std"])
        rows += [{"part": part, "metric": k, "value": v} for k, v in metrics[part].items()]
        if n_members > 1:
            for k, state in enumerate(states):
                single = ensemble_predict([state], hparams, normaliser, amounts_of(part_labels))
                rows.append({"part": part, "metric": "mae", "member": k,
                             "value": regression_metrics(y, single["mean"])["mae"]})
    tensors = {f"member{k}.{key}": value for k, state in enumerate(states) for key, value in state.items()}
    model = register_model(
        engine, name=name, architecture="roost",
        hyperparameters={**hparams, "train": config.as_dict(), "n_members": n_members},
        tensors=tensors, target_property=query.property, target_source=query.source,
        snapshot_run_id=as_of_run_of(labels), split_id=split.id,
        feature_sets=[{"name": f"element_embedding:{config.embedding}", "version": 1}],
        normaliser={**normaliser, "label_query": query.as_dict()}, n_members=n_members, metrics=rows,
        parent_model_id=parent.id if parent else None, train_seconds=seconds, device=members[0].device,
    )
    return TrainedEnsemble(model, metrics, members)


def member_states(tensors: dict[str, np.ndarray], n_members: int) -> list[dict[str, np.ndarray]]:
    return [{k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"member{i}.")}
            for i in range(n_members)]


@predictor("roost")
def _predict_roost(model: RegisteredModel, tensors, inputs: PredictionInputs, device: str) -> PredictionOutput:
    hparams = {k: v for k, v in model.hyperparameters.items() if k not in ("train", "n_members")}
    stats = ensemble_predict(member_states(tensors, model.n_members), hparams, model.normaliser, inputs.amounts,
                             device)
    epistemic = stats["epistemic_std"] if model.n_members > 1 else None
    return PredictionOutput(stats["mean"], stats["aleatoric_std"], epistemic)
