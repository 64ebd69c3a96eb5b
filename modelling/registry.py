"""The model registry: weights as safetensors with sha256 (verified on load), one ``model`` row per version,
metrics as ``model_metric`` rows written in one batch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
from safetensors.numpy import load_file, save_file

from matlake import db
from matlake.checksums import sha256_file
from matlake.config import get_settings
from matlake.errors import InputError
from matlake.schema.columns import utcnow
from matlake.version import code_version


class WeightsIntegrityError(InputError):
    """A weights file does not match the checksum recorded when the model was registered."""


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    id: int
    name: str
    version: int
    architecture: str
    hyperparameters: dict[str, Any]
    target_property: str
    target_source: str | None
    split_id: int | None
    feature_sets: list[dict[str, Any]]
    snapshot_run_id: int
    normaliser: dict[str, Any]
    n_members: int
    weights_path: str | None
    weights_sha256: str | None

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


def register_model(
    engine: sa.Engine,
    *,
    name: str,
    architecture: str,
    hyperparameters: dict[str, Any],
    tensors: dict[str, np.ndarray],
    target_property: str,
    target_source: str | None,
    snapshot_run_id: int,
    split_id: int | None = None,
    feature_sets: list[dict[str, Any]] | None = None,
    normaliser: dict[str, Any] | None = None,
    n_members: int = 1,
    metrics: list[dict[str, Any]] | None = None,
    parent_model_id: int | None = None,
    train_seconds: float | None = None,
    device: str | None = None,
    models_dir: Path | None = None,
) -> RegisteredModel:
    """Write the weights, then the registry row and its metrics in one transaction."""
    models_dir = Path(models_dir or get_settings().resolved_models_dir)
    with db.connect(engine) as conn:
        version = (conn.execute(sa.text("SELECT max(version) FROM model WHERE name = :n"), {"n": name}).scalar()
                   or 0) + 1
        path = models_dir / name / f"v{version}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp),
                  metadata={"name": name, "version": str(version), "architecture": architecture})
        tmp.replace(path)
        sha = sha256_file(path)
        model_id = conn.execute(
            sa.text(
                "INSERT INTO model (name, version, architecture, hyperparameters, target_property, target_source, "
                "split_id, feature_sets, snapshot_run_id, normaliser, n_members, parent_model_id, weights_path, "
                "weights_sha256, code_version, train_seconds, device, status, created_at) VALUES (:name, :version, "
                ":arch, :hp, :prop, :src, :split, :fs, :snap, :norm, :members, :parent, :path, :sha, :cv, :secs, "
                ":device, 'ready', :now) RETURNING id"
            ),
            {"name": name, "version": version, "arch": architecture, "hp": json.dumps(hyperparameters),
             "prop": target_property, "src": target_source, "split": split_id, "fs": json.dumps(feature_sets or []),
             "snap": snapshot_run_id, "norm": json.dumps(normaliser or {}), "members": n_members,
             "parent": parent_model_id, "path": str(path), "sha": sha, "cv": code_version(), "secs": train_seconds,
             "device": device, "now": utcnow()},
        ).scalar()
        rows = metrics or []
        db.bulk_insert(conn, "model_metric", pa.table({
            "model_id": pa.array([model_id] * len(rows), pa.int64()),
            "member": pa.array([r.get("member") for r in rows], pa.int64()),
            "part": pa.array([r["part"] for r in rows], pa.string()),
            "metric": pa.array([r["metric"] for r in rows], pa.string()),
            "value": pa.array([float(r["value"]) for r in rows], pa.float64()),
        }))
    return get_model(engine, model_id)


def get_model(engine: sa.Engine, ref: int | str, version: int | None = None) -> RegisteredModel:
    """A model by id, by ``name`` (newest version) or ``name`` + ``version``, or by ``name:v<version>``."""
    if isinstance(ref, str) and ":v" in ref:
        ref, version = ref.rsplit(":v", 1)[0], int(ref.rsplit(":v", 1)[1])
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        where, params = "id = :id", {"id": int(ref)}
    elif version is not None:
        where, params = "name = :n AND version = :v", {"n": ref, "v": version}
    else:
        where, params = "name = :n ORDER BY version DESC LIMIT 1", {"n": ref}
    with db.connect(engine) as conn:
        r = conn.execute(sa.text(
            "SELECT id, name, version, architecture, hyperparameters, target_property, target_source, split_id, "
            f"feature_sets, snapshot_run_id, normaliser, n_members, weights_path, weights_sha256 FROM model WHERE {where}"
        ), params).first()
    if r is None:
        raise InputError(f"no registered model {ref!r}" + (f" version {version}" if version else ""))
    return RegisteredModel(r.id, r.name, r.version, r.architecture, _json(r.hyperparameters), r.target_property,
                           r.target_source, r.split_id, _json(r.feature_sets) or [], r.snapshot_run_id,
                           _json(r.normaliser) or {}, r.n_members, r.weights_path, r.weights_sha256)


def load_tensors(model: RegisteredModel) -> dict[str, np.ndarray]:
    """The model's weights after checking the file's sha256 against the registry (safetensors: no code runs)."""
    path = Path(model.weights_path or "")
    if not path.is_file():
        raise InputError(f"weights of {model.label} are missing: {path}")
    actual = sha256_file(path)
    if actual != model.weights_sha256:
        raise WeightsIntegrityError(
            f"weights of {model.label} at {path} do not match the registry: sha256 {actual} != {model.weights_sha256}"
        )
    return load_file(str(path))


def model_metrics(engine: sa.Engine, model_id: int) -> list[dict[str, Any]]:
    with db.connect(engine) as conn:
        rows = conn.execute(sa.text("SELECT member, part, metric, value FROM model_metric WHERE model_id = :m "
                                    "ORDER BY part, metric, member"), {"m": model_id}).all()
    return [dict(r._mapping) for r in rows]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
