"""``matlake demo``: build an embedded database from data shipped in dependencies and query it.

Every step uses the public paths a user would: migrations, the ingestion framework, SQL views.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from . import db
from .config import get_settings
from .query import run_query

DEMO_FEATURE_SETS = ("magpie", "protostructure")

QUERIES: list[tuple[str, str]] = [
    (
        "What was loaded (current rows per source and dataset)",
        "SELECT source, dataset, count(*) AS materials FROM materials_current GROUP BY source, dataset "
        "ORDER BY source, dataset",
    ),
    (
        "Most stable compounds by experimental formation enthalpy (eV/atom)",
        "SELECT formula, round(value, 3) AS dh_f_ev_per_atom, method FROM properties_current "
        "WHERE property = 'formation_enthalpy_per_atom' ORDER BY value LIMIT 8",
    ),
    (
        "Formation enthalpy by number of elements",
        "SELECT c.n_elements, count(*) AS n, round(avg(p.value), 3) AS mean_ev_per_atom, "
        "round(min(p.value), 3) AS min_ev_per_atom FROM properties_current p "
        "JOIN composition c ON c.formula = p.formula GROUP BY c.n_elements ORDER BY c.n_elements",
    ),
    (
        "AFLOW prototypes by number of sites",
        "SELECT n_sites, count(*) AS prototypes, min(formula) AS example FROM structures_current "
        "WHERE kind = 'prototype' GROUP BY n_sites ORDER BY prototypes DESC LIMIT 6",
    ),
    (
        "Magpie features joined to properties in SQL (mean electronegativity vs formation enthalpy)",
        "SELECT CAST(round(f.\"MagpieData mean Electronegativity\", 1) AS DOUBLE) AS mean_electronegativity, "
        "count(*) AS n, round(avg(p.value), 3) AS mean_dh_f FROM properties_current p "
        "JOIN composition c ON c.formula = p.formula JOIN features_magpie f ON f.composition_id = c.id "
        "GROUP BY 1 ORDER BY 1 LIMIT 8",
    ),
    (
        "Protostructures of the AFLOW prototypes (moyopy, symprec 0.1 A): how many Wyckoff positions",
        "SELECT f.n_wyckoff_positions, count(*) AS prototypes, min(f.protostructure) AS example "
        "FROM features_protostructure f WHERE f.error IS NULL GROUP BY 1 ORDER BY 1 LIMIT 6",
    ),
    (
        "Predictions joined to materials (predictions_latest): largest Roost uncertainty first",
        "SELECT p.formula, round(pc.value, 3) AS measured, round(p.mean, 3) AS roost, round(p.std_aleatoric, 3) "
        "AS aleatoric, round(p.std_epistemic, 3) AS epistemic, round(rf.mean, 3) AS rf "
        "FROM predictions_latest p JOIN properties_current pc ON pc.material_id = p.material_id "
        "JOIN predictions_latest rf ON rf.material_id = p.material_id AND rf.model_name = 'demo-rf' "
        "WHERE p.model_name = 'demo-roost' ORDER BY p.std_total DESC LIMIT 6",
    ),
    (
        "Test MAE of each model (eV/atom), computed in SQL",
        "SELECT p.model_name, count(*) AS n, round(avg(abs(p.mean - pc.value)), 3) AS mae FROM predictions_latest p "
        "JOIN properties_current pc ON pc.material_id = p.material_id GROUP BY 1 ORDER BY 1",
    ),
    (
        "Ingestion history",
        "SELECT run_id, source, dataset, status, n_read, n_inserted, n_unchanged, n_rejected FROM ingest_history "
        "ORDER BY run_id",
    ),
]


def run(console: Console) -> None:
    from matlake.ingest import demo as demo_source
    from matlake.ingest.framework import ingest

    settings = get_settings()
    url = settings.resolved_database_url
    engine = db.create_engine(url)
    console.print(f"[bold]1. database[/bold] {url} (schema {db.upgrade(engine)})")
    console.print("[bold]2. ingest[/bold] pymatgen's experimental formation enthalpies and AFLOW prototypes")
    summaries = ingest(demo_source, demo_source.demo_files(), engine=engine, release="pymatgen-shipped",
                       progress=True)
    for s in summaries:
        console.print(
            f"   run {s.run_id} {s.dataset}: read {s.n_read}, inserted {s.n_inserted}, updated {s.n_updated}, "
            f"unchanged {s.n_unchanged}, rejected {s.n_rejected} ({s.seconds:.2f} s)"
        )
    console.print("[bold]3. features[/bold] Magpie and protostructure features into the Parquet feature store")
    from matlake.featurestore.builders import build_feature_set
    from matlake.featurestore.store import FeatureStore

    store = FeatureStore(settings.resolved_feature_store, engine)
    for name in DEMO_FEATURE_SETS:
        info = build_feature_set(name, engine=engine, store=store, use_dask=False)
        console.print(
            f"   {info.name} v{info.version}: {info.row_count} rows ({info.parameters['computed_rows']} computed), "
            f"view features_{info.name}"
        )
    console.print("[bold]4. models[/bold] RF on Magpie and a 3-member Roost ensemble (Dask) on the enthalpies")
    _train_and_predict(console, engine)
    engine.dispose()
    console.print("[bold]5. SQL[/bold] over the views (also: matlake sql \"SELECT ...\")")
    for title, query in QUERIES:
        _show(console, title, run_query(query))


DEMO_SPLIT = "demo-enthalpy-by-composition"
DEMO_ROOST_EPOCHS = 10


def _train_and_predict(console: Console, engine) -> None:
    from matlake.errors import InputError
    from matlake.modelling.baselines import train_random_forest
    from matlake.modelling.data import LabelQuery
    from matlake.modelling.ensemble import train_roost_ensemble
    from matlake.modelling.predict import predict
    from matlake.modelling.registry import get_model
    from matlake.modelling.workflows import ensure_split

    query = LabelQuery(source="demo", property="formation_enthalpy_per_atom", dataset="exp_formation_enthalpy")
    split = ensure_split(engine, DEMO_SPLIT, query, "composition", 0)
    for name, train in (
        ("demo-rf", lambda: train_random_forest(engine, query, split, name="demo-rf")),
        ("demo-roost", lambda: train_roost_ensemble(engine, query, split, name="demo-roost", n_members=3,
                                                    epochs=DEMO_ROOST_EPOCHS)),
    ):
        try:
            model = get_model(engine, name)
            console.print(f"   {model.label} already registered (snapshot run {model.snapshot_run_id})")
        except InputError:
            result = train()
            test = result.metrics.get("test", {})
            console.print(f"   trained {result.model.label}: test MAE {test.get('mae', float('nan')):.3f} eV/atom "
                          f"(n={int(test.get('n', 0))})")
        run = predict(engine, name, f"split:{DEMO_SPLIT}:test")
        console.print(f"   prediction run {run.run_id} of {run.model}: {run.n_predictions} test compositions"
                      + (" (already stored)" if run.reused else f" on {run.device}"))


def _show(console: Console, title: str, result) -> None:
    table = Table(title=title, title_justify="left")
    for name in result.column_names:
        table.add_column(name)
    for row in result.to_pylist():
        table.add_row(*("" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)) for v in row.values()))
    console.print(table)
