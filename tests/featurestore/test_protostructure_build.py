"""The protostructure feature set built from stored structures: in-process, on a LocalCluster, equal rows, and
equal to labelling the structures with pymatgen objects directly."""

from __future__ import annotations

import pyarrow as pa
import pytest
import sqlalchemy as sa

from matlake import db
from matlake.featurestore.builders import build_feature_set
from matlake.featurestore.protostructure import build_protostructure_table, structure_from_json
from matlake.featurestore.store import FeatureStore
from matlake.ingest.framework import ingest
from tests.featurestore import structure_source


@pytest.fixture
def engine(any_url, tmp_path):
    engine = db.create_engine(any_url)
    db.upgrade(engine)
    ingest(structure_source, [structure_source.write(tmp_path / "structures.json")], engine=engine)
    yield engine
    engine.dispose()


def _rows(table: pa.Table) -> pa.Table:
    return table.drop_columns(["elapsed_s"]).sort_by("structure_id")


def test_build_on_dask_equals_in_process_and_direct_labels(engine, tmp_path) -> None:
    single = FeatureStore(tmp_path / "single", engine)
    a = build_feature_set("protostructure", engine=engine, store=single, source="structtoy", use_dask=False)
    parallel = FeatureStore(tmp_path / "parallel", engine)
    b = build_feature_set("protostructure", engine=engine, store=parallel, source="structtoy", n_workers=2,
                          chunk_size=3, incremental=False)
    assert len(b.files) == 4 and len(a.files) == 1
    built = _rows(single.read(a))
    assert built.equals(_rows(parallel.read(b)))

    with engine.connect() as conn:  # the stored rows, decoded by the database driver, through pymatgen
        stored = conn.execute(sa.text("SELECT id, lattice, species, frac_coords FROM structure ORDER BY id")).all()
    direct = build_protostructure_table([(r[0], structure_from_json(*r[1:])) for r in stored])
    assert built.equals(_rows(direct))
    labels = dict(zip(built.column("structure_id").to_pylist(), built.column("protostructure").to_pylist(),
                      strict=True))
    assert sum(label is not None for label in labels.values()) == 10
    assert "AB_cP2_221_a_b:Cl-Cs" in labels.values()  # oxidation states ignored
    errors = [e for e in built.column("error").to_pylist() if e]
    assert errors == ["ProtostructureInputError: disordered structure: a Wyckoff representation needs one "
                      "element per site"]
