"""Raw rows of the files: CSV rows with their line numbers, pandas JSON tables, whole JSON documents."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..files import open_text


def load_json(path: Path) -> Any:
    """A whole (possibly compressed) JSON document: MP distributes its JSON files as single documents."""
    with open_text(path) as fh:
        return json.load(fh)


def json_documents(path: Path, what: str) -> list[Any]:
    """The documents of an API dump: a JSON list, or one ``{"data": [...]}`` page as the MP API returns it."""
    docs = load_json(path)
    if isinstance(docs, Mapping) and isinstance(docs.get("data"), list):
        docs = docs["data"]
    if not isinstance(docs, list):
        raise ValueError(f"{path}: expected a JSON list of {what} or a {{'data': [...]}} page")
    return docs


def csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str], list[str] | None]]:
    """(1-based line, row, problem) per data row; leading ``#`` comment lines are skipped, a BOM is dropped."""
    with open_text(path) as fh:
        line_no = 0
        header: list[str] | None = None
        reader = csv.reader(fh)
        for values in reader:
            line_no = reader.line_num
            if header is None:
                if not values or not "".join(values).strip() or values[0].lstrip().startswith("#"):
                    continue
                header = [h.strip().lstrip("\ufeff") for h in values]
                continue
            if not values or not "".join(values).strip():
                continue
            problem = None if len(values) == len(header) else values
            yield line_no, dict(zip(header, values)), problem


def pandas_json_rows(obj: Any, what: str) -> Iterator[tuple[Any, dict[str, Any]]]:
    """(index label, row dict) of a DataFrame written by ``to_json`` in split, columns, index or records orient."""
    if isinstance(obj, list):
        for i, row in enumerate(obj):
            yield i, row if isinstance(row, dict) else {"value": row}
        return
    if not isinstance(obj, Mapping):
        raise ValueError(f"{what}: expected a JSON table, got {type(obj).__name__}")
    if "columns" in obj and "data" in obj:
        columns = list(obj["columns"])
        index = obj.get("index") or list(range(len(obj["data"])))
        for label, values in zip(index, obj["data"]):
            yield label, dict(zip(columns, values))
        return
    values = list(obj.values())
    if values and all(isinstance(v, Mapping) for v in values):
        first = values[0]
        labels = list(first.keys())
        if all(set(v.keys()) == set(labels) for v in values) and not _looks_like_row(first):
            for label in labels:  # columns orient: column -> {index: value}
                yield label, {col: obj[col][label] for col in obj}
            return
        for label, row in obj.items():  # index orient: index -> {column: value}
            yield label, dict(row)
        return
    raise ValueError(f"{what}: not a pandas JSON table (split, columns, index or records orient)")


def _looks_like_row(d: Mapping[str, Any]) -> bool:
    return any(isinstance(v, Mapping) and "@class" in v for v in d.values()) or "@class" in d
