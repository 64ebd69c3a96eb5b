"""Training one network (one ensemble member) of a message-passing architecture, Roost (compositions) or Wren
(protostructure labels): a plain function of its inputs, so it runs the same in-process or as a Dask task, and
returns plain arrays (picklable, no file or database access). The architecture only decides how inputs become
graphs and which module is built; the loop, loss, optimiser and early stopping are shared."""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from matlake.errors import InputError

from .batching import CompositionGraphs
from .losses import robust_l1_loss
from .models.roost import Roost
from .models.wren import Wren
from .wyckoff_graphs import WyckoffGraphs

THESIS_HPARAMS: dict[str, Any] = {}  # the Roost and Wren defaults are the thesis' reference models
ARCHITECTURES = ("roost", "wren")
# thesis: Roost with Adam (app. A.1), Wren with AdamW (app. A.3); both lr 3e-4, batch 128, weight decay 1e-6
DEFAULT_OPTIMISER = {"roost": "adam", "wren": "adamw"}
# crystals per inference batch: a Wren crystal carries all its equivalent dense graphs (3DSC: 65 edges on average,
# up to 6,336 for one high-symmetry label), so smaller batches keep the (edges x 256) activations bounded
PREDICT_BATCH = {"roost": 4096, "wren": 512}


@dataclass(frozen=True)
class TrainConfig:
    """Architecture, optimiser and schedule of one member (thesis: lr 3e-4, batch 128, weight decay 1e-6;
    ``optimiser`` None = the architecture's thesis choice, Adam for Roost, AdamW for Wren)."""

    epochs: int = 100
    batch_size: int = 128
    learning_rate: float = 3e-4
    weight_decay: float = 1e-6
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    hparams: dict[str, Any] = field(default_factory=dict)
    embedding: str = "matscholar200"
    architecture: str = "roost"
    optimiser: str | None = None
    # stop after the epoch in which this many seconds of training (over every resumed session) have passed
    time_budget_s: float | None = None

    @property
    def resolved_optimiser(self) -> str:
        return self.optimiser or DEFAULT_OPTIMISER[self.architecture]

    def as_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "batch_size": self.batch_size, "learning_rate": self.learning_rate,
                "weight_decay": self.weight_decay, "seed": self.seed, "embedding": self.embedding,
                "architecture": self.architecture, "optimiser": self.resolved_optimiser,
                "hparams": dict(self.hparams), "time_budget_s": self.time_budget_s}


@dataclass
class MemberResult:
    """What a worker sends back: weights (numpy), the target normaliser, history, timings."""

    state: dict[str, np.ndarray]
    hparams: dict[str, Any]
    normaliser: dict[str, float]
    history: list[dict[str, float]]
    best_epoch: int
    seconds: float
    samples_per_second: float
    device: str


def resolve_train_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def element_table(name: str = "matscholar200") -> tuple[torch.Tensor, dict[str, int]]:
    from matlake.featurestore.embeddings import element_embedding

    emb = element_embedding(name)  # type: ignore[arg-type]
    return torch.from_numpy(np.array(emb.matrix, dtype=np.float32)), dict(emb.index)


def _check_architecture(architecture: str) -> None:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}: use one of {', '.join(ARCHITECTURES)}")


def wyckoff_table() -> torch.Tensor:
    """The Wyckoff-position embedding rows Wren indexes (its width is whatever the feature store built)."""
    from matlake.featurestore.wyckoff_embedding import wyckoff_embedding_table

    return torch.from_numpy(np.array(wyckoff_embedding_table().matrix, dtype=np.float32))


def model_inputs(architecture: str, inputs: Sequence[Any], embedding: str = "matscholar200") -> Any:
    """The flat graphs of a data set: compositions (dicts) for Roost, protostructure labels for Wren."""
    _check_architecture(architecture)
    _, index = element_table(embedding)
    if architecture == "wren":
        return WyckoffGraphs.from_labels(list(inputs), index)
    return CompositionGraphs.from_compositions(inputs, index)


def new_model(architecture: str, hparams: Mapping[str, Any], embedding: str = "matscholar200") -> nn.Module:
    """A freshly initialised network (draws from torch's global generator: seed it first)."""
    _check_architecture(architecture)
    elements, _ = element_table(embedding)
    if architecture == "wren":
        return Wren(elements, wyckoff_table(), **hparams)
    return Roost(elements, **hparams)


def parse_hparams(architecture: str, text: str | None) -> dict[str, Any]:
    """Architecture hyper-parameters from a JSON object (the CLI's ``--hparams``), checked by building the network
    once, so a misspelt name or a value out of range is a clear error before any worker starts."""
    if not text:
        return {}
    try:
        hparams = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--hparams is not valid JSON ({exc}): {text!r}") from None
    if not isinstance(hparams, dict):
        raise InputError(f"--hparams must be a JSON object of names and values, got {text!r}")
    state = torch.random.get_rng_state()
    try:
        new_model(architecture, hparams)
    except (TypeError, ValueError) as exc:
        raise InputError(f"--hparams for {architecture}: {exc}") from None
    finally:
        torch.random.set_rng_state(state)  # checking draws initial weights; leave the caller's generator as it was
    return hparams


def model_from_state(architecture: str, state: Mapping[str, np.ndarray], hparams: Mapping[str, Any]) -> nn.Module:
    """A stored member, rebuilt around the embedding tables saved in its own state."""
    _check_architecture(architecture)
    tensors = {k: torch.from_numpy(np.array(v)) for k, v in state.items()}
    if architecture == "wren":
        current = wyckoff_table().shape[0]
        if tensors["wyckoff_embedding"].shape[0] != current:
            from matlake.errors import InputError

            raise InputError(f"the model's Wyckoff table has {tensors['wyckoff_embedding'].shape[0]} positions, "
                             f"this installation's has {current}: rows would not line up")
        model: nn.Module = Wren(tensors["elem_embedding"], tensors["wyckoff_embedding"], **hparams)
    else:
        model = Roost(tensors["elem_embedding"], **hparams)
    model.load_state_dict(tensors)
    return model


def train_member(
    train_inputs: Sequence[Any],
    train_targets: Sequence[float],
    val_inputs: Sequence[Any],
    val_targets: Sequence[float],
    config: TrainConfig,
    init_state: Mapping[str, np.ndarray] | None = None,
    checkpoint: str | Path | None = None,
) -> MemberResult:
    """Train with the robust Laplace loss on normalised targets; keep the weights of the best validation MAE.

    Inputs are compositions (element -> amount) for Roost and protostructure labels for Wren
    (``config.architecture``); the graphs are built once here, before the loop. With ``checkpoint`` the whole
    training state (weights, optimiser moments, shuffling generator, best weights, history, seconds spent) is
    written there after every epoch and a run that finds one resumes from it, continuing exactly where the
    interrupted run stopped: long runs survive the end of a session or a killed worker."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = resolve_train_device(config.device)
    train = model_inputs(config.architecture, train_inputs, config.embedding)
    val = model_inputs(config.architecture, val_inputs, config.embedding) if len(val_inputs) else None
    y = torch.tensor(np.asarray(train_targets, dtype=np.float64))
    mean, std = float(y.mean()), float(y.std()) if len(y) > 1 else 1.0
    std = std if std > 0 else 1.0
    y_norm = ((y - mean) / std).float().to(device)
    model = new_model(config.architecture, config.hparams, config.embedding).to(device)
    if init_state is not None:  # transfer learning: start from a registered model, retrain every weight
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in init_state.items()})
    optimiser_class = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[config.resolved_optimiser]
    # fused: one kernel over all 2.4M parameters instead of a chain of foreach ops, 11 -> 4 ms of a ~110 ms CPU step
    optimiser = optimiser_class(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay,
                                fused=True)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, float]] = []
    # the best weights by validation MAE; without a validation set the final weights are kept and none are copied
    best = (float("inf"), -1, copy.deepcopy(model.state_dict()) if len(val_inputs) else None)
    first_epoch, spent, seen = 0, 0.0, 0
    if checkpoint is not None and Path(checkpoint).exists():
        resumed = _load_checkpoint(Path(checkpoint), config, (mean, std))
        model.load_state_dict(resumed["model"])
        optimiser.load_state_dict(resumed["optimiser"])
        generator.set_state(resumed["generator"])
        history, first_epoch, spent, seen = resumed["history"], resumed["epoch"], resumed["seconds"], resumed["seen"]
        best = (resumed["best_mae"], resumed["best_epoch"], resumed["best_model"])
    started = time.perf_counter() - spent
    for epoch in range(first_epoch, config.epochs):
        # checked before every epoch but the first: a fresh run trains at least one epoch, a resumed one that had
        # already spent its budget trains none
        if epoch > 0 and config.time_budget_s is not None and time.perf_counter() - started >= config.time_budget_s:
            break
        model.train()
        order = torch.randperm(len(train), generator=generator)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            idx = order[start:start + config.batch_size]
            batch = train.slice(idx).to(device)
            mu, log_sigma = model(batch)
            loss = robust_l1_loss(mu.squeeze(1), log_sigma.squeeze(1), y_norm[idx.to(device)])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        record = {"epoch": float(epoch), "train_loss": total / len(train)}
        if val is not None:
            pred, _ = predict_graphs(model, val, mean, std, device, PREDICT_BATCH[config.architecture])
            record["val_mae"] = float(np.mean(np.abs(pred - np.asarray(val_targets))))
            if record["val_mae"] < best[0]:
                best = (record["val_mae"], epoch, copy.deepcopy(model.state_dict()))
        history.append(record)
        if checkpoint is not None:
            _save_checkpoint(Path(checkpoint), config, (mean, std), model, optimiser, generator, history,
                             epoch + 1, time.perf_counter() - started, seen, best)
    seconds = time.perf_counter() - started
    if val is None:
        best = (float("nan"), len(history) - 1, model.state_dict())
    state = {k: v.detach().cpu().numpy().copy() for k, v in best[2].items()}
    return MemberResult(state, model.hparams, {"mean": mean, "std": std}, history, best[1], seconds,
                        seen / max(seconds, 1e-9), str(device))


def _save_checkpoint(path: Path, config: TrainConfig, normaliser: tuple[float, float], model: nn.Module,
                     optimiser: torch.optim.Optimizer, generator: torch.Generator, history: list[dict[str, float]],
                     epoch: int, seconds: float, seen: int, best: tuple[float, int, dict]) -> None:
    """Write atomically (a temporary file renamed over the old one): a kill mid-write leaves the previous epoch's."""
    state = {"config": json.dumps(config.as_dict(), sort_keys=True), "normaliser": list(normaliser),
             "model": model.state_dict(), "optimiser": optimiser.state_dict(), "generator": generator.get_state(),
             "history": history, "epoch": epoch, "seconds": seconds, "seen": seen,
             "best_mae": best[0], "best_epoch": best[1], "best_model": best[2]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, config: TrainConfig, normaliser: tuple[float, float]) -> dict[str, Any]:
    """A checkpoint resumes only the run that wrote it: same configuration (the budget and epoch count may grow)
    and the same training targets."""
    state = torch.load(path, weights_only=True)
    saved = json.loads(state["config"])
    wanted = json.loads(json.dumps(config.as_dict(), sort_keys=True))  # as saved: tuples become lists
    different = sorted(k for k in wanted if k not in ("epochs", "time_budget_s") and saved.get(k) != wanted[k])
    if different or not np.allclose(state["normaliser"], normaliser, rtol=1e-12, atol=0):
        what = ", ".join(different) if different else "the training targets"
        raise InputError(f"checkpoint {path} was written by a different training run ({what} differ): "
                         "remove it or give another path")
    return state


@torch.inference_mode()
def predict_graphs(
    model: nn.Module, graphs: CompositionGraphs | WyckoffGraphs, mean: float, std: float,
    device: torch.device | str, batch_size: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """De-normalised means and aleatoric sigmas for every crystal of ``graphs`` (Roost or Wren)."""
    model.eval()
    means, sigmas = [], []
    for start in range(0, len(graphs), batch_size):
        batch = graphs.slice(torch.arange(start, min(start + batch_size, len(graphs)))).to(device)
        mu, log_sigma = model(batch)
        means.append(mu[:, 0].double().cpu().numpy() * std + mean)
        sigmas.append(torch.exp(log_sigma[:, 0]).double().cpu().numpy() * std)
    return np.concatenate(means), np.concatenate(sigmas)
