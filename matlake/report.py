"""``matlake report MODEL``: one self-contained HTML file describing a registered model and how well it does.

The file embeds its figures as base64 PNG and its style inline; it loads nothing from the network and runs no
JavaScript, so it opens offline and can be mailed or archived as is. Predictions are computed in memory through the
architecture's registered predictor (the one ``matlake predict`` uses) and are not written to the database unless
``store_predictions`` is asked for.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from . import db
from .errors import InputError
from .version import code_version


@dataclass(frozen=True, slots=True)
class ReportSummary:
    """What was written: the file, the model, the selection evaluated and its size."""

    path: Path
    model: str
    selection: str
    n_evaluated: int
    n_unlabelled: int
    metrics: dict[str, float]
    prediction_run_id: int | None
    excluded: dict[str, int] | None = None
    """Inputs the architecture cannot take, per reason (Wren: no usable protostructure label)."""


def write_report(engine: sa.Engine, model_ref: int | str, output: Path | None = None, *, on: str | None = None,
                 device: str = "auto", store_predictions: bool = False) -> ReportSummary:
    """Evaluate ``model_ref`` on ``on`` (default: its split's test part) and write the HTML report."""
    from matlake.modelling.registry import get_model

    model = get_model(engine, model_ref)
    facts = _registry_facts(engine, model)
    selection = on or _default_selection(facts)
    evaluation, n_evaluated, n_unlabelled, excluded, device_used, inputs, predictions = _evaluate(
        engine, model, selection, device, facts["unit"])
    run_id = None
    if store_predictions:  # the predictions just computed, not a second inference
        from matlake.modelling.predict import record_predictions

        run_id = record_predictions(engine, model, selection, inputs, predictions, device_used,
                                    excluded=excluded).run_id
    output = Path(output or f"report-{model.name}-v{model.version}.html")
    document = render(facts, selection, evaluation, n_evaluated=n_evaluated, n_unlabelled=n_unlabelled,
                      device=device_used, prediction_run_id=run_id, excluded=excluded)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(document, encoding="utf-8")
    tmp.replace(output)
    return ReportSummary(output, model.label, selection, n_evaluated, n_unlabelled, evaluation.metrics, run_id,
                         excluded)


# ---- gathering --------------------------------------------------------------------------------------------------


def _registry_facts(engine: sa.Engine, model) -> dict[str, Any]:
    """Everything the registry knows about the model, its split, its data snapshot and its feature sets."""
    from matlake.modelling.registry import model_metrics

    with db.connect(engine) as conn:
        row = conn.execute(sa.text(
            "SELECT code_version, train_seconds, device, status, created_at, parent_model_id FROM model WHERE id = :m"
        ), {"m": model.id}).first()
        split = None
        if model.split_id is not None:
            s = conn.execute(sa.text("SELECT id, name, strategy, seed, parameters, snapshot_run_id, n_members "
                                     "FROM dataset_split WHERE id = :s"), {"s": model.split_id}).first()
            parts = conn.execute(sa.text("SELECT part, count(*) AS n, count(DISTINCT group_key) AS groups FROM "
                                         "split_member WHERE split_id = :s GROUP BY part ORDER BY part"),
                                 {"s": model.split_id}).all()
            split = {"name": s.name, "strategy": s.strategy, "seed": s.seed, "snapshot_run_id": s.snapshot_run_id,
                     "n_members": s.n_members, "parameters": _json(s.parameters) or {},
                     "parts": [(p.part, p.n, p.groups) for p in parts]}
        snapshot = conn.execute(sa.text(
            "SELECT run_id, source, release, dataset, status, finished_at FROM ingest_history WHERE run_id = :r"
        ), {"r": model.snapshot_run_id}).first()
        feature_rows = []
        for fs in model.feature_sets:
            found = conn.execute(sa.text(
                "SELECT name, version, partition, row_count, snapshot_run_id, code_version FROM feature_set "
                "WHERE name = :n AND version = :v ORDER BY partition"), {"n": fs.get("name"), "v": fs.get("version")}
            ).all()
            feature_rows += [dict(r._mapping) for r in found] or [{"name": fs.get("name"), "version": fs.get("version"),
                                                                   "partition": fs.get("partition", "-")}]
        unit = conn.execute(sa.text("SELECT min(unit) FROM property_value WHERE property = :p"),
                            {"p": model.target_property}).scalar()
    return {"model": model, "row": row, "split": split, "snapshot": snapshot, "feature_sets": feature_rows,
            "metrics": model_metrics(engine, model.id), "unit": unit or ""}


def _default_selection(facts: dict[str, Any]) -> str:
    split = facts["split"]
    if split is None:
        raise InputError(f"{facts['model'].label} has no stored split: name what to evaluate with --on")
    parts = [p for p, _, _ in split["parts"]]
    if "test" not in parts:
        raise InputError(f"split {split['name']} has no test part (parts: {', '.join(parts)}): use --on")
    return f"split:{split['name']}:test"


def _evaluate(engine: sa.Engine, model, selection: str, device: str, unit: str):
    """Predict ``selection`` in memory and evaluate against the model's label query as of now.

    Returns (evaluation, n evaluated, n unlabelled, excluded, device, inputs, predictions)."""
    from matlake.modelling import ensemble  # noqa: F401  registers the Roost predictor
    from matlake.modelling.data import LabelQuery, load_labels
    from matlake.modelling.evaluation import evaluate
    from matlake.modelling.predict import PREDICTORS, inputs_for, resolve_device
    from matlake.modelling.registry import load_tensors

    if model.architecture not in PREDICTORS:
        raise InputError(f"no inference is implemented for architecture {model.architecture!r}")
    query_dict = dict(model.normaliser.get("label_query") or {})
    if not query_dict:
        query_dict = {"source": model.target_source, "property": model.target_property}
    query_dict["as_of_run"] = None  # the labels as they are now: a newer release is evaluated against new labels
    labels = load_labels(engine, LabelQuery(**query_dict))
    label_of = dict(zip(labels.column("material_id").to_pylist(), labels.column("value").to_pylist()))
    inputs, excluded = inputs_for(engine, model.architecture, selection)  # Wren: protostructure labels attached
    device = resolve_device(device)
    output = PREDICTORS[model.architecture](model, load_tensors(model), inputs, device)
    keep = [i for i, m in enumerate(inputs.material_ids) if m is not None and m in label_of]
    if not keep:
        raise InputError(f"none of the {len(inputs.material_ids)} inputs of {selection!r} has a "
                         f"{query_dict['property']} label of source {query_dict['source']}")
    y = np.array([label_of[inputs.material_ids[i]] for i in keep])
    std = output.std_total
    evaluation = evaluate(y, output.mean[keep], None if std is None else std[keep],
                          quantity=model.target_property.replace("_", " "), unit=unit)
    return evaluation, len(keep), len(inputs.material_ids) - len(keep), excluded, device, inputs, output


# ---- rendering --------------------------------------------------------------------------------------------------

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #1d1d1f; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0; } th, td { padding: 3px 10px; text-align: left;
       border-bottom: 1px solid #eee; vertical-align: top; } th { background: #f6f6f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 12px; }
code { font-size: 12px; } figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.9em; }
img { max-width: 100%; border: 1px solid #eee; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.figures figure { flex: 1 1 420px; max-width: 520px; } .figures figure.calibration { max-width: 1040px; flex-basis: 100%; }
"""


def render(facts: dict[str, Any], selection: str, evaluation, *, n_evaluated: int, n_unlabelled: int,
           device: str, prediction_run_id: int | None = None, excluded: dict[str, int] | None = None) -> str:
    """The HTML document (a string): registry entry, data, metrics per part, and the evaluation figures."""
    model, row, split = facts["model"], facts["row"], facts["split"]
    e = html.escape
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    entry = [
        ("id", model.id), ("architecture", model.architecture), ("members", model.n_members),
        ("target", f"{model.target_source}/{model.target_property}" + (f" ({facts['unit']})" if facts["unit"] else "")),
        ("label query", json.dumps(model.normaliser.get("label_query", {}))),
        ("data snapshot", f"ingest run {model.snapshot_run_id}"),
        ("code version", row.code_version), ("created", str(row.created_at)[:19]),
        ("training", f"{row.train_seconds:.1f} s on {row.device}" if row.train_seconds is not None else "-"),
        ("fine-tuned from", f"model {row.parent_model_id}" if row.parent_model_id else "-"),
        ("weights", model.weights_path), ("weights sha256", model.weights_sha256),
    ]
    normaliser = {k: (f"{len(v)} names" if isinstance(v, list) and len(v) > 10 else v)
                  for k, v in model.normaliser.items() if k != "label_query"}
    parts = [f"<h1>{e(model.label)}</h1>",
             f"<p class='sub'>{e(model.architecture)} model of {e(model.target_property)}; report written {now} "
             f"by matlake {e(code_version())}</p>",
             "<h2>Registry entry</h2>", _kv_table(entry),
             "<h3>Hyper-parameters</h3>", f"<pre>{e(json.dumps(model.hyperparameters, indent=2, sort_keys=True))}</pre>",
             "<h3>Target normaliser and inputs</h3>", f"<pre>{e(json.dumps(normaliser, indent=2, sort_keys=True))}</pre>",
             "<h3>Feature sets</h3>", _table(["name", "version", "partition", "rows", "snapshot run", "code version"],
                                             [[f.get("name"), f.get("version"), f.get("partition"), f.get("row_count"),
                                               f.get("snapshot_run_id"), f.get("code_version")]
                                              for f in facts["feature_sets"]])]
    parts.append("<h2>Data snapshot and split</h2>")
    snap = facts["snapshot"]
    if snap is not None:
        parts.append(f"<p>Training labels were read as of ingest run {snap.run_id}, the newest run that had changed "
                     f"data when the model was trained ({e(snap.source)}/{e(snap.dataset)}, release "
                     f"{e(str(snap.release))}, {e(snap.status)} {e(str(snap.finished_at)[:19])}).</p>")
    if split is not None:
        parts.append(f"<p>Split <code>{e(split['name'])}</code>: strategy {e(split['strategy'])}, seed "
                     f"{split['seed']}, {split['n_members']} materials, snapshot run {split['snapshot_run_id']}.</p>")
        parts.append(_table(["part", "materials", "distinct groups"], [list(p) for p in split["parts"]]))
    else:
        parts.append("<p>No stored split.</p>")
    parts += ["<h2>Metrics per part (registry)</h2>", _metrics_table(facts["metrics"])]
    parts.append(f"<h2>Evaluation on <code>{e(selection)}</code></h2>")
    note = f"{n_evaluated} labelled predictions (computed on {e(device)} for this report"
    note += f", also stored as prediction run {prediction_run_id})" if prediction_run_id else ", not stored)"
    if n_unlabelled:
        note += f"; {n_unlabelled} selected inputs have no current label and are left out"
    if excluded and any(excluded.values()):
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(excluded.items()) if n)
        note += f"; inputs this architecture cannot take were left out before predicting ({e(reasons)})"
    parts.append(f"<p>{note}.</p>")
    parts.append(_table(["metric", "value"], [[k, _fmt(v)] for k, v in sorted(evaluation.metrics.items())]))
    parts.append("<div class='figures'>")
    for fig in evaluation.figures:
        data = base64.b64encode(fig.png).decode("ascii")
        parts.append(f"<figure id='figure-{e(fig.name)}' class='{e(fig.name)}'><img alt='{e(fig.title)}' "
                     f"src='data:image/png;base64,{data}'><figcaption>{e(fig.title)}. {_caption(fig.name)}"
                     f"</figcaption></figure>")
    parts.append("</div>")
    if len(evaluation.figures) == 1:
        parts.append("<p>This model predicts no standard deviation, so there is no confidence or calibration "
                     "figure.</p>")
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{e(model.label)}: matlake model report</title><style>{STYLE}</style></head>"
            f"<body>\n{body}\n</body></html>\n")


def _caption(name: str) -> str:
    return {
        "parity": "Each point is one material; the dashed line is y = x.",
        "confidence": "MAE of the predictions kept after removing the most uncertain ones (by total predicted std), "
                      "against removing them at random and by their actual error (the best any ranking can do). "
                      "Gain: 0 = no better than random, 1 = the oracle.",
        "calibration": "Left: sorted normalised residuals against standard normal quantiles (slope 1 = calibrated, "
                       "above 1 = over-confident). Right: the fraction of true values inside central intervals of "
                       "the predicted Gaussian against the nominal fraction.",
    }.get(name, "")


def _metrics_table(rows: list[dict[str, Any]]) -> str:
    whole = [r for r in rows if r["member"] is None]
    names = sorted({r["metric"] for r in whole}, key=lambda m: (m not in ("mae", "rmse", "r2", "n"), m))
    parts = sorted({r["part"] for r in whole}, key=lambda p: ({"train": 0, "val": 1, "test": 2}.get(p, 3), p))
    value = {(r["part"], r["metric"]): r["value"] for r in whole}
    table = _table(["part", *names], [[p, *(_fmt(value.get((p, m))) for m in names)] for p in parts])
    members = [r for r in rows if r["member"] is not None]
    if members:
        table += "<p>Single members (MAE):</p>" + _table(
            ["part", "member", "metric", "value"], [[r["part"], r["member"], r["metric"], _fmt(r["value"])]
                                                    for r in members])
    return table


def _kv_table(pairs: list[tuple[str, Any]]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(str(v))}</code></td></tr>"
                               for k, v in pairs) + "</table>"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f"<td class='num'>{html.escape(str(c))}</td>" if isinstance(c, (int, float)) else
        f"<td>{html.escape('-' if c is None else str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() and abs(value) >= 10 else f"{value:.4g}"
    return str(value)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
