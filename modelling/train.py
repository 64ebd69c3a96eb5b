"""Training one Roost network (one ensemble member): a plain function of its inputs, so it runs the same in-process
or as a Dask task, and returns plain arrays (picklable, no file or database access)."""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .batching import CompositionGraphs
from .losses import robust_l1_loss
from .models.roost import Roost

THESIS_HPARAMS: dict[str, Any] = {}  # the Roost defaults are the thesis' reference model


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and schedule of one member (thesis: Adam, lr 3e-4, batch 128, weight decay 1e-6)."""

    epochs: int = 100
    batch_size: int = 128
    learning_rate: float = 3e-4
    weight_decay: float = 1e-6
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    hparams: dict[str, Any] = field(default_factory=dict)
    embedding: str = "matscholar200"

    def as_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "batch_size": self.batch_size, "learning_rate": self.learning_rate,
                "weight_decay": self.weight_decay, "seed": self.seed, "embedding": self.embedding,
                "hparams": dict(self.hparams)}


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


def train_member(
    train_compositions: Sequence[Mapping[str, float]],
    train_targets: Sequence[float],
    val_compositions: Sequence[Mapping[str, float]],
    val_targets: Sequence[float],
    config: TrainConfig,
    init_state: Mapping[str, np.ndarray] | None = None,
) -> MemberResult:
    """Train with the robust Laplace loss on normalised targets; keep the weights of the best validation MAE."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = resolve_train_device(config.device)
    embedding, index = element_table(config.embedding)
    train = CompositionGraphs.from_compositions(train_compositions, index)
    val = CompositionGraphs.from_compositions(val_compositions, index) if len(val_compositions) else None
    y = torch.tensor(np.asarray(train_targets, dtype=np.float64))
    mean, std = float(y.mean()), float(y.std()) if len(y) > 1 else 1.0
    std = std if std > 0 else 1.0
    y_norm = ((y - mean) / std).float().to(device)
    model = Roost(embedding, **config.hparams).to(device)
    if init_state is not None:  # transfer learning: start from a registered model, retrain every weight
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in init_state.items()})
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, float]] = []
    best = (float("inf"), -1, copy.deepcopy(model.state_dict()))
    started = time.perf_counter()
    seen = 0
    for epoch in range(config.epochs):
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
            pred, _ = predict_graphs(model, val, mean, std, device)
            record["val_mae"] = float(np.mean(np.abs(pred - np.asarray(val_targets))))
            if record["val_mae"] < best[0]:
                best = (record["val_mae"], epoch, copy.deepcopy(model.state_dict()))
        history.append(record)
    seconds = time.perf_counter() - started
    if val is None:
        best = (float("nan"), config.epochs - 1, model.state_dict())
    state = {k: v.detach().cpu().numpy().copy() for k, v in best[2].items()}
    return MemberResult(state, model.hparams, {"mean": mean, "std": std}, history, best[1], seconds,
                        seen / max(seconds, 1e-9), str(device))


@torch.inference_mode()
def predict_graphs(
    model: Roost, graphs: CompositionGraphs, mean: float, std: float, device: torch.device | str,
    batch_size: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """De-normalised means and aleatoric sigmas for every composition of ``graphs``."""
    model.eval()
    means, sigmas = [], []
    for start in range(0, len(graphs), batch_size):
        batch = graphs.slice(torch.arange(start, min(start + batch_size, len(graphs)))).to(device)
        mu, log_sigma = model(batch)
        means.append(mu[:, 0].double().cpu().numpy() * std + mean)
        sigmas.append(torch.exp(log_sigma[:, 0]).double().cpu().numpy() * std)
    return np.concatenate(means), np.concatenate(sigmas)
