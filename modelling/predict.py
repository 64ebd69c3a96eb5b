"""Inference into tracked tables: one ``prediction_run`` (model, selection, data snapshot, device) and its
``prediction`` rows (mean, aleatoric, epistemic, total std, and the protostructure a Wren model read) written
with one bulk load. Inputs are stored materials (``source:``, ``split:``, ``sql:``) or hypothetical
protostructure labels typed by hand (``protostructure:LABEL,LABEL``), which need no structure."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from matlake import db
from matlake.schema.versioning import SNAPSHOT_SQL
from matlake.errors import InputError
from matlake.schema.columns import utcnow
from matlake.version import code_version

from .registry import RegisteredModel, get_model, load_tensors


@dataclass(frozen=True, slots=True)
class PredictionInputs:
    """What to predict: compositions (and the materials they belong to, if any) and, for structure-aware models
    or hand-typed labels, protostructure labels."""

    material_ids: list[int | None]
    composition_ids: list[int | None]
    amounts: list[dict[str, float]]
    structure_ids: list[int | None]
    protostructures: list[str | None] | None = None


@dataclass(frozen=True, slots=True)
class PredictionOutput:
    mean: np.ndarray
    std_aleatoric: np.ndarray | None
    std_epistemic: np.ndarray | None

    @property
    def std_total(self) -> np.ndarray | None:
        parts = [s for s in (self.std_aleatoric, self.std_epistemic) if s is not None]
        if not parts:
            return None
        return np.sqrt(sum(p**2 for p in parts))


@dataclass(frozen=True, slots=True)
class PredictionRunSummary:
    run_id: int
    model: str
    n_predictions: int
    device: str
    seconds: float
    reused: bool
    n_excluded: dict[str, int] | None = None  # inputs left out, by reason (no usable protostructure)


Predictor = Callable[[RegisteredModel, dict[str, np.ndarray], PredictionInputs, str], PredictionOutput]
PREDICTORS: dict[str, Predictor] = {}
NEEDS_PROTOSTRUCTURES: set[str] = set()


def predictor(architecture: str, *, needs_protostructures: bool = False) -> Callable[[Predictor], Predictor]:
    """Register the inference function of an architecture; ``needs_protostructures``: its inputs are labels, so
    stored materials are looked up in the protostructure feature set first."""

    def register(fn: Predictor) -> Predictor:
        PREDICTORS[architecture] = fn
        if needs_protostructures:
            NEEDS_PROTOSTRUCTURES.add(architecture)
        return fn

    return register


@predictor("random_forest")
def _predict_forest(model: RegisteredModel, tensors, inputs: PredictionInputs, device: str) -> PredictionOutput:
    from matlake.featurestore.magpie import magpie_features

    from .models.forest import ForestPredictor

    mean, spread = ForestPredictor.from_tensors(tensors).predict(magpie_features(inputs.amounts))
    return PredictionOutput(mean, None, spread)


def resolve_device(device: str) -> str:
    """``auto`` takes CUDA when torch sees a GPU, else the CPU."""
    if device not in {"auto", "cpu", "cuda"}:
        raise InputError(f"unknown device {device!r}: use auto, cpu or cuda")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but torch sees no CUDA device")
    return device


def label_inputs(labels: list[str], engine: sa.Engine | None = None) -> PredictionInputs:
    """Hypothetical inputs: protostructure labels with no material or structure behind them. With an engine,
    each gets the id of its composition where that composition is already stored (so SQL can rank candidate
    polymorphs of a formula beside known materials); nothing is written."""
    from matlake.ingest.formulas import composition_from_amounts

    from .wyckoff_graphs import check_protostructure, protostructure_composition

    checked = [check_protostructure(label) for label in labels]
    if not checked:
        raise InputError("no protostructure labels given")
    amounts = [protostructure_composition(lab) for lab in checked]
    composition_ids: list[int | None] = [None] * len(checked)
    if engine is not None:
        formulas = [composition_from_amounts(a).formula for a in amounts]
        with db.connect(engine) as conn:
            known = db.lookup(conn, "composition", "formula", "id", sorted(set(formulas)))
        composition_ids = [known.get(f) for f in formulas]
    n = len(checked)
    return PredictionInputs([None] * n, composition_ids, amounts, [None] * n, checked)


def labels_selection(labels: str) -> str:
    """The ``protostructure:`` selection of comma-separated labels, or of a file's labels (one per line, ``#``
    starts a comment), so a stored run names its inputs whatever file they came from."""
    from pathlib import Path

    path = Path(labels)
    if path.is_file():
        lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
        listed = [line for line in lines if line]
        if not listed:
            raise InputError(f"{path}: no protostructure labels in the file")
        return "protostructure:" + ",".join(listed)
    return "protostructure:" + labels


def select_inputs(engine: sa.Engine, selection: str) -> PredictionInputs:
    """``source:NAME`` (current materials), ``split:NAME:PART``, ``sql:SELECT ...`` returning composition_id
    (and optionally material_id, structure_id), or ``protostructure:LABEL,LABEL`` (hypothetical labels)."""
    kind, _, rest = selection.partition(":")
    if kind == "protostructure":
        return label_inputs([lab.strip() for lab in rest.split(",") if lab.strip()], engine)
    if kind == "source":
        sql = ("SELECT material_id, composition_id, NULL AS structure_id FROM materials_current WHERE source = :v "
               "AND composition_id IS NOT NULL ORDER BY material_id")  # materials of unknown composition: no input
        params = {"v": rest}
    elif kind == "split":
        name, _, part = rest.rpartition(":")
        sql = ("SELECT sm.material_id, r.composition_id, NULL AS structure_id FROM split_member sm "
               "JOIN dataset_split ds ON ds.id = sm.split_id "
               "JOIN material_revision r ON r.material_id = sm.material_id AND r.valid_to_run_id IS NULL "
               "AND r.status = 'active' AND r.composition_id IS NOT NULL WHERE ds.name = :n AND sm.part = :p "
               "ORDER BY sm.id")
        params = {"n": name, "p": part}
    elif kind == "sql":
        sql, params = rest, {}
    else:
        raise InputError(f"selection {selection!r}: use source:NAME, split:NAME:PART, sql:SELECT ... or "
                         "protostructure:LABEL,LABEL")
    with db.connect(engine) as conn:
        try:
            result = conn.execute(sa.text(sql), params)
        except sa.exc.DBAPIError as exc:
            raise InputError(f"selection query failed: {str(exc.orig).splitlines()[0]}") from None
        rows = [dict(r._mapping) for r in result]
        if rows and "composition_id" not in rows[0]:
            raise InputError("a sql: selection must return a composition_id column")
        rows = [r for r in rows if r["composition_id"] is not None]
        ids = sorted({r["composition_id"] for r in rows})
        amounts = {}
        for chunk_start in range(0, len(ids), 5000):
            chunk = ids[chunk_start:chunk_start + 5000]
            stmt = sa.text("SELECT id, amounts FROM composition WHERE id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True))
            amounts.update({i: (json.loads(a) if isinstance(a, str) else a)
                            for i, a in conn.execute(stmt, {"ids": chunk}).all()})
    if not rows:
        raise InputError(f"selection {selection!r} matched nothing")
    missing = [r["composition_id"] for r in rows if r["composition_id"] not in amounts]
    if missing:
        raise InputError(f"selection returned unknown composition ids, e.g. {missing[:3]}")
    return PredictionInputs(
        material_ids=[r.get("material_id") for r in rows],
        composition_ids=[r["composition_id"] for r in rows],
        amounts=[amounts[r["composition_id"]] for r in rows],
        structure_ids=[r.get("structure_id") for r in rows],
    )


def predict(
    engine: sa.Engine,
    model_ref: int | str,
    selection: str,
    *,
    device: str = "auto",
    force: bool = False,
) -> PredictionRunSummary:
    """Predict ``selection`` with a registered model and store the run; the same model, selection and snapshot
    are not written twice unless ``force``."""
    from . import ensemble  # noqa: F401  registers the Roost and Wren predictors

    model = get_model(engine, model_ref)
    if model.architecture not in PREDICTORS:
        raise InputError(f"no inference is implemented for architecture {model.architecture!r}")
    device = resolve_device(device)
    inputs, excluded = inputs_for(engine, model.architecture, selection)
    key = _run_key(engine, selection, inputs)
    reused = None if force else _reused_run(engine, model, key, excluded)
    if reused is not None:
        return reused
    started = time.perf_counter()
    output = PREDICTORS[model.architecture](model, load_tensors(model), inputs, device)
    return _insert_run(engine, model, selection, key, inputs, output, device, time.perf_counter() - started, excluded)


def record_predictions(
    engine: sa.Engine,
    model: RegisteredModel,
    selection: str,
    inputs: PredictionInputs,
    output: PredictionOutput,
    device: str,
    *,
    force: bool = False,
    excluded: dict[str, int] | None = None,
) -> PredictionRunSummary:
    """Store predictions already computed for ``inputs`` (those of ``inputs_for(engine, architecture, selection)``)
    as a tracked run, so a caller that needed them in memory first (an evaluation report) does not predict twice.
    Like :func:`predict`, an identical run of the same snapshot is reused unless ``force``."""
    key = _run_key(engine, selection, inputs)
    reused = None if force else _reused_run(engine, model, key, excluded)
    if reused is not None:
        return reused
    return _insert_run(engine, model, selection, key, inputs, output, device, 0.0, excluded)


def _run_key(engine: sa.Engine, selection: str, inputs: PredictionInputs) -> tuple[int | None, str]:
    """(data snapshot, hash of the selection and its inputs): what makes two prediction runs the same."""
    with db.connect(engine) as conn:
        snapshot = conn.execute(sa.text(SNAPSHOT_SQL)).scalar()
    selection_hash = hashlib.sha256(
        json.dumps([selection, inputs.material_ids, inputs.composition_ids]
                   + ([inputs.structure_ids, inputs.protostructures] if inputs.protostructures else [])).encode()
    ).hexdigest()
    return snapshot, selection_hash


def _reused_run(engine: sa.Engine, model: RegisteredModel, key: tuple[int | None, str],
                excluded: dict[str, int] | None) -> PredictionRunSummary | None:
    """The newest stored run of this model with the same run key, or None."""
    snapshot, selection_hash = key
    with db.connect(engine) as conn:
        existing = conn.execute(sa.text(
            "SELECT id, n_predictions, device FROM prediction_run WHERE model_id = :m AND selection_hash = :h "
            "AND snapshot_run_id = :s ORDER BY id DESC LIMIT 1"
        ), {"m": model.id, "h": selection_hash, "s": snapshot}).first()
    if existing is None:
        return None
    return PredictionRunSummary(existing.id, model.label, existing.n_predictions, existing.device, 0.0, True, excluded)


def _insert_run(engine: sa.Engine, model: RegisteredModel, selection: str, key: tuple[int | None, str],
                inputs: PredictionInputs, output: PredictionOutput, device: str, seconds: float,
                excluded: dict[str, int] | None) -> PredictionRunSummary:
    """One prediction_run row and its predictions, in one bulk load."""
    n = len(inputs.composition_ids)
    if len(output.mean) != n:
        raise ValueError(f"{len(output.mean)} predictions for {n} inputs")
    snapshot, selection_hash = key
    total = output.std_total
    with db.connect(engine) as conn:
        run_id = conn.execute(sa.text(
            "INSERT INTO prediction_run (model_id, selection, selection_hash, snapshot_run_id, device, n_predictions, "
            "code_version, started_at, finished_at) VALUES (:m, :sel, :h, :s, :d, :n, :cv, :now, :now) RETURNING id"
        ), {"m": model.id, "sel": selection, "h": selection_hash, "s": snapshot, "d": device,
            "n": n, "cv": code_version(), "now": utcnow()}).scalar()
        db.bulk_insert(conn, "prediction", pa.table({
            "run_id": pa.array([run_id] * n, pa.int64()),
            "material_id": pa.array(inputs.material_ids, pa.int64()),
            "composition_id": pa.array(inputs.composition_ids, pa.int64()),
            "structure_id": pa.array(inputs.structure_ids, pa.int64()),
            "protostructure": pa.array(inputs.protostructures or [None] * n, pa.string()),
            "mean": pa.array(output.mean, pa.float64()),
            "std_aleatoric": _optional(output.std_aleatoric, n),
            "std_epistemic": _optional(output.std_epistemic, n),
            "std_total": _optional(total, n),
        }))
    return PredictionRunSummary(run_id, model.label, n, device, seconds, False, excluded)


def inputs_for(engine: sa.Engine, architecture: str, selection: str) -> tuple[PredictionInputs, dict[str, int] | None]:
    """What a model of ``architecture`` predicts for ``selection``: for architectures that read protostructure
    labels, stored materials get the label of their structure and those without a usable one are left out
    (counted per reason, the second value; None when nothing needed looking up)."""
    from . import ensemble  # noqa: F401  registers the Roost and Wren predictors

    inputs = select_inputs(engine, selection)
    if architecture in NEEDS_PROTOSTRUCTURES and inputs.protostructures is None:
        return _with_protostructures(engine, inputs)
    return inputs, None


def _with_protostructures(engine: sa.Engine, inputs: PredictionInputs) -> tuple[PredictionInputs, dict[str, int]]:
    """The inputs whose structure (given, or the one standing for the material) has a usable protostructure
    label, with the labels attached, and how many were left out per reason."""
    from .protostructure_inputs import EXCLUSION_REASONS, load_protostructures, structures_of_materials

    lookup = load_protostructures(engine)
    standing = structures_of_materials(engine, [m for m, s in zip(inputs.material_ids, inputs.structure_ids)
                                                if s is None])
    structure_ids = [s if s is not None else standing.get(m) for m, s in zip(inputs.material_ids,
                                                                             inputs.structure_ids)]
    reasons = [lookup.reason(s) for s in structure_ids]
    keep = [i for i, r in enumerate(reasons) if r is None]
    if not keep:
        raise InputError(f"none of the {len(reasons)} selected inputs has a usable protostructure label "
                         f"({', '.join(sorted({r for r in reasons if r}))})")
    excluded = {r: sum(1 for x in reasons if x == r) for r in EXCLUSION_REASONS}
    kept = PredictionInputs(
        [inputs.material_ids[i] for i in keep], [inputs.composition_ids[i] for i in keep],
        [inputs.amounts[i] for i in keep], [structure_ids[i] for i in keep],
        [lookup.labels[structure_ids[i]] for i in keep],  # type: ignore[index]
    )
    return kept, excluded


def _optional(values: np.ndarray | None, n: int) -> pa.Array:
    return pa.array([None] * n if values is None else np.asarray(values, dtype=np.float64), pa.float64())
