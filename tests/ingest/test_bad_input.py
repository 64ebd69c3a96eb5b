"""Bad input for the tabular sources (OQMD, experimental) ends in rejects that name the record and the reason, on
DuckDB and PostgreSQL: nothing crashes, nothing readable is lost, and an incomplete file never withdraws records."""

from __future__ import annotations

import gzip
import json

import pytest
import sqlalchemy as sa

from matlake import db
from matlake.ingest import experimental, oqmd
from matlake.ingest.framework import ingest

from .test_oqmd import FE, NACL, page

VAL = "crabnet_OQMD_Formation_Enthalpy_val.csv"
# _ONE_REJECT_PER_FILE: a file that read() rejects as a whole before its first record (missing column, error page)
# also counts as an empty_file reject in the framework today (it counts records per file and adds empty_file when
# there were none). One reject per file is the intent, so these tests accept either.


@pytest.fixture
def engine(any_url):
    engine = db.create_engine(any_url)
    db.upgrade(engine)
    return engine


def _csv(n: int) -> str:
    """n distinct compositions (Fe_i O_{i+1} never reduce), so a gzip of it is long enough to cut."""
    return "formula,target\n" + "".join(f"Fe{i}O{i + 1},{-1 - i / 1000:.6f}\n" for i in range(1, n + 1))


def _rejects(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT record_key, reason_code, position, message FROM ingest_reject ORDER BY id")).all()]


def _balanced(s) -> None:
    assert s.n_read == s.n_inserted + s.n_updated + s.n_unchanged + s.n_rejected
    assert s.status == "succeeded"


def test_truncated_gzip_keeps_rows_before_the_cut_and_withdraws_nothing(engine, tmp_path):
    full = tmp_path / "v1" / VAL
    full.parent.mkdir()
    full.write_bytes(gzip.compress(_csv(3000).encode()))
    [first] = ingest(oqmd, [full], engine=engine)
    assert first.n_inserted == 3000
    cut = tmp_path / "v2" / VAL
    cut.parent.mkdir()
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    [s] = ingest(oqmd, [cut], engine=engine)
    _balanced(s)
    assert s.rejects_by_reason == {"unreadable_file": 1}
    assert 1000 < s.n_unchanged < 3000 and s.n_withdrawn == 0
    [(key, reason, position, message)] = _rejects(engine)
    assert reason == "unreadable_file" and position == s.n_unchanged and "EOFError" in message


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_optimade_page_keeps_complete_resources(engine, tmp_path, compress):
    text = json.dumps(page([NACL, FE, {**NACL, "id": "oqmd-1004"}], next_url=None, total=3), indent=1)
    cut = text[: text.index('"oqmd-1004"') + 40].encode()
    path = tmp_path / "structures_page_1.json"
    path.write_bytes(gzip.compress(cut)[:-8] if compress else cut)  # -8: no gzip trailer
    [s] = ingest(oqmd, [path], engine=engine)
    _balanced(s)
    assert (s.n_inserted, s.rejects_by_reason) == (2, {"unreadable_file": 1})
    [(_, _, position, message)] = _rejects(engine)
    assert position == 2 and ("EOFError" if compress else "truncated") in message


def test_duplicate_ids_keep_the_first(engine, tmp_path):
    pages = [tmp_path / "p1.json", tmp_path / "p2.json"]
    pages[0].write_text(json.dumps(page([NACL, FE], next_url="https://oqmd.org/optimade/v1/structures?page=2",
                                        total=3)))
    pages[1].write_text(json.dumps(page([{**FE, "attributes": {**FE["attributes"], "_oqmd_delta_e": 0.5}}],
                                        next_url=None, total=3)))
    [s] = ingest(oqmd, pages, engine=engine)
    _balanced(s)
    assert (s.n_inserted, s.rejects_by_reason) == (2, {"duplicate_id": 1})
    with engine.connect() as conn:
        value = conn.execute(sa.text("SELECT value FROM properties_current WHERE source_record_id = 'oqmd-1002' "
                                     "AND property = 'formation_energy_per_atom'")).scalar()
    assert value == 0.0
    assert _rejects(engine)[0][:2] == ("oqmd-1002", "duplicate_id")


@pytest.mark.parametrize("module, name, text, expected", [
    (oqmd, VAL, "formula,target\nFeO,nan\nNaCl,inf\nMgO,-Infinity\nCaO,-3.3\n", {"non_finite_value": 3}),
    (oqmd, VAL, "formula,target\nXx2O,-1\nD2O,-1\nCaO,-3.3\n", {"unknown_element": 2}),
    (oqmd, VAL, "formula,target\nFeO,abc\nNaCl,\nMgO,1_000\nKCl,1.2.3\nCaO,-3.3\n",
     {"non_numeric_value": 3, "missing_value": 1}),
    (oqmd, VAL, "formula,target\nFeO,-1,extra\nNaCl\nCaO,-3.3\n", {"wrong_field_count": 2}),
    (oqmd, "qmpy_thermodata_legacy.dat", "composition energy\nFeO -1 2\nNaCl NaN\nCaO -3.3\n",
     {"wrong_field_count": 1, "non_finite_value": 1}),
    (oqmd, "aviary_oqmd_test.csv", "id,composition,target\n0,Fe0.5O0.5,-1\n0,Na0.5Cl0.5,-2\n1,Ca0.5O0.5,-3.3\n",
     {"duplicate_id": 1}),
    (experimental, "aviary_expt-non-metals.csv", "id,composition,Eg\n1,GaN,inf\n2,Xx,1\n3,Si,abc\n4,CaO,7.0\n",
     {"non_finite_value": 1, "unknown_element": 1, "non_numeric_value": 1}),
    (experimental, "qmpy_thermodata_ssub.dat", "FeO nan\nQq2O -1\nCaO -3.3\n",
     {"non_finite_value": 1, "unknown_element": 1}),
])
def test_bad_rows_are_rejected_by_reason(engine, tmp_path, module, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    [s] = ingest(module, [path], engine=engine)
    _balanced(s)
    assert s.rejects_by_reason == expected
    assert s.n_inserted == s.n_read - sum(expected.values()) >= 1
    rejects = _rejects(engine)
    assert all(key and message for key, _, _, message in rejects)


@pytest.mark.parametrize("module, name, text", [
    (oqmd, VAL, ""),
    (oqmd, VAL, "formula,target\n"),
    (oqmd, "qmpy_thermodata_legacy.dat", "composition energy\n\n"),
    (oqmd, "structures_page_1.json", ""),
    (oqmd, "structures_page_1.json", json.dumps(page([], next_url=None, total=0))),
    (experimental, "qmpy_thermodata_ssub.dat", ""),
])
def test_empty_files_are_one_reject_and_withdraw_nothing(engine, tmp_path, module, name, text):
    first = tmp_path / "v1" / name
    first.parent.mkdir()
    good = {VAL: "formula,target\nCaO,-3.3\n", "qmpy_thermodata_legacy.dat": "CaO -3.3\n",
            "qmpy_thermodata_ssub.dat": "CaO -3.3\n",
            "structures_page_1.json": json.dumps(page([NACL], next_url=None, total=1))}[name]
    first.write_text(good)
    ingest(module, [first], engine=engine)
    empty = tmp_path / name
    empty.write_text(text)
    [s] = ingest(module, [empty], engine=engine)
    _balanced(s)
    assert (s.n_read, s.rejects_by_reason, s.n_withdrawn) == (1, {"empty_file": 1}, 0)


@pytest.mark.parametrize("module, name, text", [
    (oqmd, VAL, "formula,energy_ev\nCaO,-3.3\nMgO,-3.0\n"),
    (oqmd, "aviary_oqmd_test.csv", "id,target\n0,-3.3\n"),
    (oqmd, "qmpy_thermodata_legacy.dat", "name delta_e\nCaO -3.3\n"),
    (experimental, "aviary_expt-non-metals.csv", "id,composition,gap\n1,GaN,3.4\n"),
])
def test_missing_column_rejects_the_file_and_withdraws_nothing(engine, tmp_path, module, name, text):
    first = tmp_path / "v1" / name
    first.parent.mkdir()
    first.write_text({VAL: "formula,target\nCaO,-3.3\n", "aviary_oqmd_test.csv": "id,composition,target\n0,CaO,-3\n",
                      "qmpy_thermodata_legacy.dat": "CaO -3.3\n",
                      "aviary_expt-non-metals.csv": "id,composition,Eg\n1,GaN,3.4\n"}[name])
    ingest(module, [first], engine=engine)
    bad = tmp_path / name
    bad.write_text(text)
    [s] = ingest(module, [bad], engine=engine)
    _balanced(s)
    assert (s.n_accepted, s.n_withdrawn, s.rejects_by_reason.get("missing_column")) == (0, 0, 1)
    assert set(s.rejects_by_reason) <= {"missing_column", "empty_file"}  # see _ONE_REJECT_PER_FILE
    message = next(m for _, reason, _, m in _rejects(engine) if reason == "missing_column")
    assert "lacks required column" in message and name in message


def test_undecodable_bytes_stop_the_file_after_the_good_rows(engine, tmp_path):
    path = tmp_path / VAL
    path.write_bytes(_csv(3000).encode() + b"Fe\xe9O,-1\n" + b"CaO,-3.3\n")  # a latin-1 byte in a UTF-8 file
    [s] = ingest(oqmd, [path], engine=engine)
    _balanced(s)
    assert s.rejects_by_reason == {"unreadable_file": 1}
    assert 2000 < s.n_inserted < 3000  # text is decoded in blocks: the rows of the block holding the byte stop too
    assert "UnicodeDecodeError" in _rejects(engine)[0][3]


def test_non_optimade_json_is_rejected_as_a_file(engine, tmp_path):
    error = tmp_path / "structures_page_1.json"
    error.write_text(json.dumps({"errors": [{"status": "400", "title": "Bad Request"}], "meta": {}}))
    other = tmp_path / "structures_page_2.json"
    other.write_text(json.dumps({"meta": {"api_version": "1.1.0"}}))
    [s] = ingest(oqmd, [error, other], engine=engine)
    _balanced(s)
    assert (s.n_accepted, s.rejects_by_reason.get("optimade_error"), s.rejects_by_reason.get("not_optimade")) == (
        0, 1, 1)
    assert set(s.rejects_by_reason) <= {"optimade_error", "not_optimade", "empty_file"}  # see _ONE_REJECT_PER_FILE
