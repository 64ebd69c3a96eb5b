"""Reading composition/value tables (CSV and qmpy's whitespace ``.dat``) into raw rows, shared by the tabular sources.

The sources differ only in which columns hold the formula and the value and what the value means; the problems are
the same everywhere and are handled here once:

* A header that lacks a required column makes the whole file uninterpretable: :func:`csv_rows` raises
  :class:`RecordRejected` with ``missing_column`` before yielding anything, so the framework records one reject that
  names the file and the columns it has, stops that file, and withdraws nothing (the input is incomplete). Guessing
  a column by position would silently load, say, a band gap as a formation energy.
* A row with too few or too many fields, or whose own id repeats an earlier row's id, still reaches ``normalise``:
  :class:`Row.problem` says what is wrong and :func:`check_row` turns it into a reject of that row only.
* Values go through :func:`number`: empty, non-numeric, NaN and infinite values are rejects with distinct codes.

Rows are yielded lazily (files of any size stream), and ``position`` is the 0-based index among data rows, so a
reject's position is the row a user finds with ``pandas.read_csv(...).iloc[position]``.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .files import open_text
from .formulas import FormulaError, parse_formula
from .records import RawRecord, RecordRejected

INDEX_COLUMN = "index"
"""Name given to an unnamed first column (a pandas index written with ``to_csv``)."""

_SPLIT = re.compile(r"(?:^|[_\-.])(train|val|valid|validation|test)$", re.IGNORECASE)
_COMPRESSED = (".gz", ".xz", ".bz2")


@dataclass(slots=True)
class Row:
    """One data row as text, keyed by column name; ``problem`` is ``(reason_code, message)`` when it cannot be used."""

    fields: dict[str, str]
    line_number: int
    problem: tuple[str, str] | None = None

    def __str__(self) -> str:
        return f"line {self.line_number}: " + ",".join(self.fields.values())


def csv_rows(path: Path, required: Sequence[str], *, id_column: str | None = None) -> Iterator[RawRecord]:
    """Rows of a CSV file with a header naming at least ``required``; ``key`` is the row's ``id_column`` if given.

    Blank lines are skipped. An ``id_column`` value seen before marks the row with a ``duplicate_id`` problem.
    """
    with open_text(path) as fh:
        reader = csv.reader(fh)
        lines = _guarded(reader, path)
        header = _header(next(lines, None))
        if header is None:
            return
        _require(path, header, required)
        n_columns = len(header)
        seen_ids: dict[str, int] = {}
        position = 0
        for values in lines:
            if not values or (len(values) == 1 and not values[0].strip()):
                continue
            row = Row(dict(zip(header, values)), reader.line_num)
            if len(values) != n_columns:
                row.problem = ("wrong_field_count", f"{path.name} line {reader.line_num}: {len(values)} fields, "
                                                    f"the header has {n_columns} ({','.join(header)})")
                if len(values) > n_columns:
                    row.fields["_extra_fields"] = ",".join(values[n_columns:])
            key = row.fields.get(id_column) if id_column else None
            if key is not None:
                key = key.strip()
                if key in seen_ids and row.problem is None:
                    row.problem = ("duplicate_id", f"row id {key!r} occurs again (first at data row {seen_ids[key]}, "
                                                   "which is kept)")
                seen_ids.setdefault(key, position)
            yield RawRecord(file=str(path), position=position, payload=row, key=key)
            position += 1


def whitespace_rows(path: Path, columns: Sequence[str]) -> Iterator[RawRecord]:
    """Rows of a whitespace-separated table such as qmpy's ``composition energy`` ``.dat`` files.

    The first line is a header when its last field is not a number (qmpy writes one for some tables, not others);
    a header must name ``columns``. Lines starting with ``#`` and blank lines are skipped.
    """
    with open_text(path) as fh:
        position = 0
        names: list[str] | None = None
        for line_number, line in enumerate(fh, start=1):
            values = line.split()
            if not values or values[0].startswith("#"):
                continue
            if names is None:
                names = list(columns)
                if not _is_number(values[-1]):
                    names = [v.lower() for v in values]
                    _require(path, names, columns)
                    continue
            row = Row(dict(zip(names, values)), line_number)
            if len(values) != len(names):
                row.problem = ("wrong_field_count", f"{path.name} line {line_number}: {len(values)} fields, "
                                                    f"expected {len(names)} ({' '.join(names)})")
            excerpt = f"line {line_number}: {line.strip()}"
            yield RawRecord(file=str(path), position=position, payload=row, excerpt=excerpt)
            position += 1


def check_row(raw: RawRecord) -> Row:
    """The row of ``raw``, or a reject saying why it cannot be used."""
    row: Row = raw.payload
    if row.problem is not None:
        key = raw.key or next(iter(row.fields.values()), None)  # the first cell names a row best when no id does
        raise RecordRejected(row.problem[0], row.problem[1], key)
    return row


def number(text: str | None, what: str, key: str | None) -> float:
    """A finite float from a table cell; empty, non-numeric and non-finite cells are rejects with their own codes."""
    stripped = (text or "").strip()
    if not stripped:
        raise RecordRejected("missing_value", f"{key}: {what} is empty", key)
    try:
        if "_" in stripped:  # float() reads "1_000" as 1000; no table writes numbers that way
            raise ValueError(stripped)
        value = float(stripped)
    except ValueError:
        raise RecordRejected("non_numeric_value", f"{key}: {what} {stripped!r} is not a number", key) from None
    if not math.isfinite(value):
        raise RecordRejected("non_finite_value", f"{key}: {what} is {stripped}", key)
    return value


def canonical_formula(text: str | None, key: str | None = None) -> str:
    """The composition key of a written formula (see :mod:`.formulas`); a bad formula is a reject with its code."""
    try:
        return parse_formula((text or "").strip()).formula
    except FormulaError as exc:
        raise RecordRejected(exc.reason_code, str(exc), key or text) from None


class OccurrenceIds:
    """Record ids ``formula``, ``formula~2``, ``formula~3``... for files that hold several rows per composition.

    Used where repeated compositions are separate measurements, not duplicates: the n-th row of a composition in
    a file gets suffix ``~n``. The suffix depends on the order of the file, so it is stable while the file is.
    A formula that does not parse keeps its text as key; ``normalise`` then rejects it with the formula's reason.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def __call__(self, formula_text: str) -> str:
        try:
            base = parse_formula(formula_text.strip()).formula
        except FormulaError:
            return formula_text
        n = self._counts.get(base, 0) + 1
        self._counts[base] = n
        return base if n == 1 else f"{base}~{n}"


def read_header(path: Path) -> list[str] | None:
    """The header fields of a CSV file (for telling formats apart), or None when it cannot be read."""
    try:
        with open_text(path) as fh:
            return _header(next(csv.reader(fh), None))
    except (OSError, EOFError, ValueError, UnicodeDecodeError, csv.Error):
        return None


def split_of(path: Path) -> str | None:
    """``train``/``val``/``test`` when the file name ends with one (``..._val.csv``), else None."""
    m = _SPLIT.search(stem(path))
    if m is None:
        return None
    word = m.group(1).lower()
    return "val" if word.startswith("val") else word


def stem(path: Path) -> str:
    """The file name without compression and format suffixes (``a_test.csv.gz`` -> ``a_test``)."""
    name = path.name
    for suffix in _COMPRESSED:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name.rsplit(".", 1)[0] if "." in name else name


def _header(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    header = [v.strip().lstrip("\ufeff") for v in values]
    if header[0] == "":
        header[0] = INDEX_COLUMN
    return header


def _guarded(reader, path: Path) -> Iterator[list[str]]:
    """csv.Error is no OSError/ValueError; re-raise it as one so the framework records an unreadable file."""
    try:
        yield from reader
    except csv.Error as exc:
        raise ValueError(f"{path.name} line {reader.line_num}: {exc}") from exc


def _require(path: Path, header: Sequence[str], required: Sequence[str]) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        raise RecordRejected(
            "missing_column",
            f"{path.name}: the header ({', '.join(header)}) lacks required column(s) {', '.join(missing)}; "
            "no row of this file was loaded",
        )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
