"""Bulk helpers of matlake.db on both databases: inserts that return ids, and key lookups of any size."""

from __future__ import annotations

import pyarrow as pa

from matlake import db


def _compositions(formulas: list[str]) -> pa.Table:
    n = len(formulas)
    return pa.table({
        "formula": formulas, "elements": ['["Fe"]'] * n, "fractions": ['{"Fe": 1.0}'] * n,
        "amounts": ['{"Fe": 1.0}'] * n, "chemical_system": ["Fe"] * n, "n_elements": [1] * n,
        "is_integer": [True] * n,
    })


def test_insert_returning_skips_conflicts_and_lookup_finds_every_key(any_url):
    engine = db.create_engine(any_url)
    db.upgrade(engine)
    with db.connect(engine) as conn:
        first = dict(db.insert_returning(conn, "composition", _compositions(["A", "B"]), ("formula", "id")))
        assert sorted(first) == ["A", "B"]
        again = db.insert_returning(conn, "composition", _compositions(["B", "C"]), ("formula", "id"),
                                    skip_conflicts_on=("formula",))
        assert [f for f, _ in again] == ["C"]  # B existed: skipped, not returned
        plain = db.insert_returning(conn, "composition", _compositions(["D"]), ("formula",))
        assert plain == [("D",)]
        keys = [f"X{i}" for i in range(5000)] + ["A", "C"]
        found = db.lookup(conn, "composition", "formula", "id", keys)
        assert found == {"A": first["A"], "C": again[0][1]}
        assert db.lookup(conn, "composition", "formula", "id", []) == {}
