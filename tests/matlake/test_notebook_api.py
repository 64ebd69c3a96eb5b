"""``matlake.connect()`` for notebooks: views, feature views, pymatgen objects, and reading while an ingest writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from pymatgen.core import Composition, Lattice, Species, Structure

import matlake
from matlake import db, snapshots
from matlake.config import get_settings
from matlake.errors import ConfigError, DatabaseError, DatabaseLockedError
from matlake.featurestore.store import FeatureStore, write_part
from matlake.ingest import demo
from matlake.ingest.framework import ingest
from matlake.notebook import LiveDatabaseWarning, SnapshotWarning
from tests.ingest import toy_source

from .test_scheduler import events, once_soon, start, stop, toy_job, toy_rows, wait_for, write_jobs

ROOT = Path(__file__).resolve().parents[2]


def nacl() -> Structure:
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    s.add_oxidation_state_by_element({"Na": 1, "Cl": -1})
    return s


def feco() -> Structure:
    return Structure(Lattice.cubic(2.86), [{"Fe": 0.5, "Co": 0.5}] * 2, [[0, 0, 0], [0.5, 0.5, 0.5]])


def prototypes_file(tmp_path: Path) -> Path:
    """Two structures in the demo source's AFLOW-prototype format (one with oxidation states, one disordered)."""
    entries = [{"snl": s.as_dict(), "tags": {"aflow": label}}
               for label, s in (("AB_cF8_225_a_b", nacl()), ("A_cI2_229_a", feco()))]
    path = tmp_path / "aflow_prototypes.json"
    path.write_text(json.dumps(entries))
    return path


def database() -> Path:
    return db.duckdb_path(get_settings().resolved_database_url)


@pytest.fixture
def lake(tmp_path) -> FeatureStore:
    """A database with 10 toy materials, two structures and a feature set in two versions."""
    engine = db.create_engine()
    db.upgrade(engine)
    ingest(toy_source, [toy_source.write(tmp_path / "rows.csv", toy_rows(10))], engine=engine)
    ingest(demo, [prototypes_file(tmp_path)], engine=engine)
    store = FeatureStore(tmp_path / "features", engine)
    for version in (1, 2):
        part = write_part(store.staging_dir(), pa.table({"material_id": [1, 2, 3], "x": [version * 0.1] * 3}))
        store.register("toyfeat", [part], snapshot_run_id=2)
    return store


def test_connect_gives_views_feature_views_and_pymatgen_objects(lake):
    with matlake.connect(snapshot="never") as con:
        assert con.source.kind == "database"
        assert isinstance(con.duckdb, duckdb.DuckDBPyConnection)
        assert {"materials_current", "properties_current", "structures_current", "ingest_history",
                "features_toyfeat"} <= set(con.views())
        assert con.execute("SELECT count(*) FROM materials_current").fetchall() == [(12,)]
        assert con.sql("SELECT DISTINCT x FROM features_toyfeat").fetchall() == [(0.2,)]  # the latest version
        assert con.execute("SELECT temporary FROM duckdb_views() WHERE view_name = 'features_toyfeat' "
                           "ORDER BY temporary DESC").fetchall()[0] == (True,)

        df = con.to_pandas("SELECT source, count(*) AS n FROM materials_current GROUP BY 1 ORDER BY 1")
        assert isinstance(df, pd.DataFrame) and df.to_dict("records") == [{"source": "demo", "n": 2},
                                                                          {"source": "toy", "n": 10}]
        table = con.to_arrow("SELECT formula FROM materials_current WHERE source = $s ORDER BY 1", {"s": "toy"})
        assert isinstance(table, pa.Table) and table.num_rows == 10

        by_id = con.structures("SELECT structure_id FROM structures_current ORDER BY source_record_id")
        rows = con.structures("SELECT s.* FROM structure s JOIN material m ON m.id = s.material_id "
                              "ORDER BY m.source_record_id")
        for got in (by_id, rows):
            assert [s.composition for s in got] == [nacl().composition, feco().composition]
            assert got[0].matches(nacl()) and got[1].matches(feco())
            assert got[0].species[0] == Species("Na", 1) and got[0][0].specie.oxi_state == 1
            assert not got[1].is_ordered and got[1][0].species == Composition({"Fe": 0.5, "Co": 0.5})

        expected = [Composition("Fe2O3"), Composition("NaCl")]
        query = "FROM materials_current WHERE source_record_id IN ('t-0', 't-1') ORDER BY source_record_id"
        assert con.compositions(f"SELECT formula {query}") == expected
        assert con.compositions(f"SELECT composition_id {query}") == expected
        assert con.compositions("SELECT c.elements, c.amounts FROM composition c JOIN materials_current m "
                                f"ON m.composition_id = c.id WHERE m.source_record_id IN ('t-0', 't-1') "
                                "ORDER BY m.source_record_id") == expected


def test_a_read_only_connection_refuses_writes(lake):
    con = matlake.connect(snapshot="never")
    with pytest.raises(duckdb.Error, match="read-only"):
        con.execute("DELETE FROM ingest_reject")
    con.close()
    writer = matlake.connect(read_only=False)
    assert writer.execute("SELECT count(*) FROM material").fetchall() == [(12,)]
    writer.close()


def test_a_current_snapshot_is_read_without_blocking_and_a_stale_one_is_not(lake, tmp_path):
    snap = snapshots.publish(database())
    assert snap is not None and snap.run_id == 2
    assert snapshots.publish(database()) is None  # nothing changed: nothing to copy
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        con = matlake.connect()
    assert con.source.kind == "snapshot" and con.source.run_id == 2 and con.source.up_to_date
    assert "features_toyfeat" in con.views()
    con.close()

    ingest(toy_source, [toy_source.write(tmp_path / "gap.csv", toy_rows(3, 50))], engine=db.create_engine())
    with pytest.warns(LiveDatabaseWarning, match="close"):
        con = matlake.connect()
    assert con.source.kind == "database" and con.execute("SELECT count(*) FROM materials_current").fetchall() == [(15,)]
    con.close()
    with pytest.warns(SnapshotWarning, match="as of ingest run 2"):
        con = matlake.connect(snapshot="always")
    assert con.execute("SELECT count(*) FROM materials_current").fetchall() == [(12,)]
    con.close()


def _hold_database(path: Path) -> subprocess.Popen:
    """Another process that has the DuckDB file open for writing, as an ingest does."""
    script = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_while_a_writer_holds_the_file_connect_reads_the_snapshot_and_says_so(lake):
    holder = _hold_database(database())
    try:
        with pytest.raises(DatabaseLockedError, match="no snapshot has been published yet"):
            matlake.connect()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        snapshots.publish(database())
        ingest(toy_source, [toy_source.write(database().parent / "more.csv", toy_rows(2, 70))],
               engine=db.create_engine(), mode="partial")
        holder = _hold_database(database())
        with pytest.warns(SnapshotWarning, match=rf"being written by .*\(PID {holder.pid}\).*as of ingest run 2"):
            con = matlake.connect()
        assert con.source.kind == "snapshot" and not con.source.up_to_date
        assert con.execute("SELECT count(*) FROM materials_current").fetchall() == [(12,)]
        con.close()
        started = time.monotonic()
        with pytest.raises(DatabaseLockedError, match=f"PID {holder.pid}"):
            matlake.connect(snapshot="never")  # waits MATLAKE_LOCK_TIMEOUT_S (2 s in tests), then says who
        assert time.monotonic() - started >= 1.5
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_postgresql_and_in_memory_urls_are_refused_with_what_to_use_instead(monkeypatch):
    with pytest.raises(ConfigError, match=r"SQLAlchemy.*matlake\.db\.create_engine"):
        matlake.connect(url="postgresql+psycopg://user@db.example/matlake")
    with pytest.raises(ConfigError, match="in-memory"):
        matlake.connect(url="duckdb:///:memory:")
    with pytest.raises(DatabaseError, match="does not exist"):
        matlake.connect(snapshot="never")


READER = textwrap.dedent("""
    import json, sys, time, warnings
    import matlake
    log, target = open(sys.argv[1], "a"), int(sys.argv[2])
    deadline, seen_target = time.monotonic() + 120, 0
    while time.monotonic() < deadline and seen_target < 5:
        record = {"t": time.time()}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                con = matlake.connect()
                record["n"] = con.execute("SELECT count(*) FROM materials_current").fetchall()[0][0]
                record["kind"] = con.source.kind
                con.close()
            except Exception as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"
        record["warnings"] = [type(w.message).__name__ for w in caught]
        log.write(json.dumps(record) + "\\n")
        log.flush()
        seen_target += record.get("n") == target
        time.sleep(0.05)
""")


def test_a_notebook_reading_in_a_loop_sees_the_old_or_the_new_state_while_the_scheduler_ingests(lake, tmp_path):
    snapshots.publish(database())  # the state before: 12 materials
    toy_source.write(tmp_path / "more.csv", toy_rows(40, 100))
    jobs = write_jobs(tmp_path / "jobs.toml", [toy_job(input=["more.csv"], mode="partial", batch_size=5,
                                                       schedule=once_soon(4))])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MATLAKE_LOCK_TIMEOUT_S": "20", "TOY_SLOW_S": "0.05"}
    reads = tmp_path / "reads.jsonl"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(reads), "52"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    scheduler = start(jobs, env, tmp_path)
    try:
        wait_for(lambda: any(e["event"] == "succeeded" for e in events(jobs)), [scheduler], timeout=90,
                 what="the scheduled ingest")
        _, reader_err = reader.communicate(timeout=120)
    finally:
        reader.kill()
        rc, out, err = stop(scheduler)
    assert reader.returncode == 0, reader_err
    assert rc == 0, err

    records = [json.loads(line) for line in reads.read_text().splitlines()]
    assert not [r for r in records if "error" in r], records
    assert {r["n"] for r in records} == {12, 52}, "a reader saw part of a run"
    evts = events(jobs)
    began = datetime.fromisoformat(next(e["time"] for e in evts if e["event"] == "started")).timestamp()
    ended = datetime.fromisoformat(next(e["time"] for e in evts if e["event"] == "succeeded")).timestamp()
    during = [r for r in records if began < r["t"] < ended]
    assert len(during) >= 5, "the reader did not read while the ingest ran"
    assert any(r["kind"] == "snapshot" and "SnapshotWarning" in r["warnings"] for r in during)
    assert records[-1]["n"] == 52
    assert any(e["event"] == "snapshot" for e in evts)
