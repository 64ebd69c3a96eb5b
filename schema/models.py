"""Modelling: stored data splits, the model registry with metrics, prediction runs and predictions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from .columns import double, json_field, text, timestamp


class DatasetSplit(SQLModel, table=True):
    """One stored split of labelled materials into train/val/test (or folds), reproducible from its snapshot."""

    __tablename__ = "dataset_split"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)
    strategy: str = Field(description="random, composition, chemical_system, protostructure, kfold.")
    seed: int
    parameters: dict[str, Any] | None = json_field(description="Fractions, label query, source, property...")
    snapshot_run_id: int
    n_members: int = 0
    created_at: datetime = timestamp()


class SplitMember(SQLModel, table=True):
    """One material's assignment to a part of a split, with the key that grouping kept together."""

    __tablename__ = "split_member"

    id: int | None = Field(default=None, primary_key=True)
    split_id: int = Field(foreign_key="dataset_split.id")
    material_id: int = Field(foreign_key="material.id")
    part: str = Field(description="train, val, test, or fold_<k>.")
    group_key: str | None = None


class Model(SQLModel, table=True):
    """One trained model (a single network, a deep ensemble, or a baseline) with everything needed to rebuild it."""

    __tablename__ = "model"
    __table_args__ = (sa.UniqueConstraint("name", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str
    version: int
    architecture: str = Field(description="roost, wren, random_forest, reaction_graph, ...")
    hyperparameters: dict[str, Any] | None = json_field()
    target_property: str
    target_source: str | None = None
    split_id: int | None = Field(default=None, foreign_key="dataset_split.id")
    feature_sets: list[dict[str, Any]] | None = json_field(description="[{name, version}] inputs.")
    snapshot_run_id: int
    normaliser: dict[str, Any] | None = json_field(description="Target mean/std applied in training.")
    n_members: int = 1
    parent_model_id: int | None = Field(default=None, description="Model this one was fine-tuned from.")
    weights_path: str | None = None
    weights_sha256: str | None = None
    code_version: str
    train_seconds: float | None = double(nullable=True)
    device: str | None = None
    status: str = Field(default="ready")
    created_at: datetime = timestamp()


class ModelMetric(SQLModel, table=True):
    """One metric of a model (or one member) on one part of its split."""

    __tablename__ = "model_metric"

    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="model.id")
    member: int | None = Field(default=None, description="Ensemble member index; NULL = whole model.")
    part: str
    metric: str = Field(description="mae, rmse, r2, spearman_err_std, ...")
    value: float = double()


class PredictionRun(SQLModel, table=True):
    """One inference pass of one model over one selection of inputs at one data snapshot."""

    __tablename__ = "prediction_run"

    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="model.id")
    selection: str = text(nullable=False)
    selection_hash: str
    snapshot_run_id: int
    device: str
    n_predictions: int = 0
    code_version: str
    started_at: datetime = timestamp()
    finished_at: datetime | None = timestamp(nullable=True)


class Prediction(SQLModel, table=True):
    """One predicted value with its aleatoric, epistemic and total standard deviations (target units)."""

    __tablename__ = "prediction"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="prediction_run.id")
    material_id: int | None = Field(default=None, foreign_key="material.id", description="NULL for a hypothetical input.")
    composition_id: int | None = Field(default=None, foreign_key="composition.id")
    structure_id: int | None = Field(default=None, foreign_key="structure.id")
    protostructure: str | None = None
    mean: float = double()
    std_aleatoric: float | None = double(nullable=True)
    std_epistemic: float | None = double(nullable=True)
    std_total: float | None = double(nullable=True)
