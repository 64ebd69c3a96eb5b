"""Operations and their conditions: temperatures in kelvin, times in hours, one atmosphere class, device, media."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..records import OperationData, RecordRejected
from .materials import clean_text

_TEMPERATURE_UNITS = {
    "c": ("C", 273.15), "°c": ("C", 273.15), "ºc": ("C", 273.15), "℃": ("C", 273.15), "degc": ("C", 273.15),
    "deg c": ("C", 273.15), "celsius": ("C", 273.15), "k": ("K", 0.0), "kelvin": ("K", 0.0),
    "f": ("F", 0.0), "°f": ("F", 0.0), "ºf": ("F", 0.0),
}
_HOURS_PER_UNIT = {
    "h": 1.0, "hr": 1.0, "hrs": 1.0, "hour": 1.0, "hours": 1.0, "min": 1 / 60, "mins": 1 / 60, "minute": 1 / 60,
    "minutes": 1 / 60, "s": 1 / 3600, "sec": 1 / 3600, "secs": 1 / 3600, "second": 1 / 3600,
    "seconds": 1 / 3600, "d": 24.0, "day": 24.0, "days": 24.0, "week": 168.0, "weeks": 168.0, "wk": 168.0,
}
_ATMOSPHERE_WORDS = (
    ("vacuum", re.compile(r"vacuum|vacuo|evacuated", re.I)),
    ("H2", re.compile(r"hydrogen|\bh2\b|forming gas", re.I)),
    ("O2", re.compile(r"oxygen|\bo2\b", re.I)),
    ("N2", re.compile(r"nitrogen|\bn2\b", re.I)),
    ("Ar", re.compile(r"argon|\bar\b", re.I)),
    ("air", re.compile(r"\bair\b|ambient|atmospheric", re.I)),
    ("other", re.compile(r"carbon|\bco2?\b|ammonia|\bnh3\b|\bh2s\b|sulfur|sulphur|helium|\bhe\b|chlorine|\bcl2\b"
                         r"|steam|vapou?r|\bh2o\b|fluorine|\bf2\b|methane|\bch4\b|inert", re.I)),
)
_INERT_CARRIERS = frozenset({"N2", "Ar"})


def value_list(value: Any) -> list[Any]:
    """A condition as a list: ``None`` and ``""`` are empty, a scalar or an object is one item."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [v for v in value if v is not None and v != ""]
    return [value]


def _numbers(spec: Mapping[str, Any]) -> list[float]:
    found = []
    for item in [*value_list(spec.get("values")), spec.get("min_value"), spec.get("max_value")]:
        if item is None or isinstance(item, bool):
            continue
        try:
            value = float(item)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            found.append(value)
    return found


def _temperatures_k(specs: list[Any]) -> list[float]:
    kelvin = []
    for spec in specs:
        if not isinstance(spec, dict):
            continue
        unit = _TEMPERATURE_UNITS.get(str(spec.get("units") or "").strip().lower())
        if unit is None:
            continue
        for value in _numbers(spec):
            k = (value - 32) * 5 / 9 + 273.15 if unit[0] == "F" else value + unit[1]
            if k > 0:
                kelvin.append(round(k, 6))
    return kelvin


def _times_h(specs: list[Any]) -> list[float]:
    hours = []
    for spec in specs:
        if not isinstance(spec, dict):
            continue
        factor = _HOURS_PER_UNIT.get(str(spec.get("units") or "").strip().lower().rstrip("."))
        if factor is None:
            continue
        hours.extend(round(v * factor, 9) for v in _numbers(spec) if v >= 0)
    return hours


def atmosphere_class(raw: Iterable[str]) -> str | None:
    """One of air, O2, N2, Ar, H2, vacuum, other for the atmospheres named in one operation.

    Each gas named counts; hydrogen with nitrogen or argon is a reducing (forming gas) mixture, so it is H2; any
    other mixture, and text that names no known gas, is other.
    """
    classes = set()
    for text in raw:
        if text.strip():
            named = {name for name, pattern in _ATMOSPHERE_WORDS if pattern.search(text)}
            classes |= named or {"other"}
    if not classes:
        return None
    if len(classes) == 1:
        return classes.pop()
    if "H2" in classes and classes - {"H2"} <= _INERT_CARRIERS:
        return "H2"
    return "other"


def parse_operation(position: int, raw: Any, what: str) -> OperationData:
    """One operation; its raw conditions keep only the entries with a value (dialects differ in null vs [])."""
    if not isinstance(raw, dict):
        raise RecordRejected("invalid_record", f"{what}: operation {position} is not an object")
    conditions = raw.get("conditions")
    if conditions is not None and not isinstance(conditions, dict):
        raise RecordRejected("invalid_record", f"{what}: conditions of operation {position} are not an object")
    kind, token = clean_text(raw.get("type")) or "unknown", clean_text(raw.get("token"))
    conditions = {k: v for k, v in (conditions or {}).items() if v is not None and v != "" and v != [] and v != {}}
    if not conditions:
        return OperationData(position=position, type=kind, token=token)
    temperatures = _temperatures_k(value_list(conditions.get("heating_temperature")))
    times = _times_h(value_list(conditions.get("heating_time")))
    atmospheres = [str(a) for a in value_list(conditions.get("heating_atmosphere"))]
    return OperationData(
        position=position,
        type=kind,
        token=token,
        conditions_raw=conditions,
        temperature_min_k=min(temperatures, default=None),
        temperature_max_k=max(temperatures, default=None),
        time_min_h=min(times, default=None),
        time_max_h=max(times, default=None),
        atmosphere=atmosphere_class(atmospheres),
        atmosphere_raw="; ".join(atmospheres) or None,
        device=clean_text(value_list(conditions.get("mixing_device"))),
        media=clean_text(value_list(conditions.get("mixing_media"))),
    )


def has_conditions(op: OperationData) -> bool:
    """Whether any condition of the operation was normalised (the recipe's ``has_conditions`` flag)."""
    return any(v is not None for v in (op.temperature_max_k, op.time_max_h, op.atmosphere, op.device, op.media))
