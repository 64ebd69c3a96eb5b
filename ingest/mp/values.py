"""Checked values of one record: numbers, element symbols, structure dicts, run types, and a reject's excerpt.

Also used by the WBM ingester, whose data are MP-compatible.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from pymatgen.core import Element, Structure

from matlake.schema.enums import Method

from ..records import RecordRejected

EXCERPT_CHARS = 2000
ELEMENT_SYMBOLS = frozenset(e.symbol for e in Element)

_RUN_TYPES = {"GGA": Method.GGA, "GGA+U": Method.GGA_U, "PBE": Method.PBE, "R2SCAN": Method.R2SCAN,
              "r2SCAN": Method.R2SCAN}


def number(value: Any, what: str, key: str | None = None, *, required: bool = True) -> float | None:
    """A finite float, or None for a missing optional value; text, NaN and infinities are rejects."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RecordRejected("missing_value", f"{key or 'record'}: {what} is missing", key)
        return None
    if isinstance(value, bool):
        raise RecordRejected("non_numeric_value", f"{key or 'record'}: {what} is {value!r}, not a number", key)
    try:
        x = float(value)
    except (TypeError, ValueError):
        message = f"{key or 'record'}: {what} is {value!r}, not a number"
        raise RecordRejected("non_numeric_value", message, key) from None
    if not math.isfinite(x):
        raise RecordRejected("non_finite_value", f"{key or 'record'}: {what} is {x}", key)
    return x


def check_symbols(symbols: Iterable[str], key: str | None) -> None:
    """Reject element symbols pymatgen would silently turn into dummy species (``Xx``) or guess from nothing."""
    for symbol in symbols:
        if symbol not in ELEMENT_SYMBOLS:
            raise RecordRejected("unknown_element", f"{key or 'record'}: unknown element {symbol!r}", key)


def structure_from_dict(d: Any, what: str, key: str | None) -> Structure:
    """A pymatgen Structure from its dict, with unknown elements and unreadable dicts as rejects."""
    if not isinstance(d, Mapping) or not isinstance(d.get("sites"), list) or "lattice" not in d:
        raise RecordRejected("missing_structure", f"{key or 'record'}: no {what} structure", key)
    symbols = []
    for site in d["sites"]:
        for sp in site.get("species") or []:
            symbols.append(str(sp.get("element", "")))
    check_symbols(symbols, key)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Structure.from_dict(dict(d))
    except Exception as exc:  # pymatgen raises many types for a malformed dict
        raise RecordRejected("unreadable_structure", f"{key or 'record'}: {what} structure: {exc}", key) from None


def method_of(run_type: Any) -> str:
    """The Method of an MP run type ('GGA', 'GGA+U', 'r2SCAN'); anything else is unknown."""
    return _RUN_TYPES.get(str(run_type), Method.UNKNOWN) if run_type else Method.UNKNOWN


def excerpt(value: Any) -> str:
    """The start of a raw record as text (JSON for objects), as stored with a reject."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:EXCERPT_CHARS]
