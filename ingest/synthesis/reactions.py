"""The balanced reaction: its two sides read and checked against the reaction string, signs, element balance."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..records import RecordRejected
from .amounts import AmountError, amount_variables, as_number, evaluate_amount
from .materials import Material, species_counts

_BALANCE_PROBES = (0.1234567, 0.2345671, 0.0345612, 0.1456723, 0.0567234, 0.1678345, 0.0789456, 0.1890567)
_BALANCE_RELATIVE = 0.01
_BALANCE_ROUNDING = 0.0015
_BALANCING_GASES = frozenset({"O2", "CO2", "H2O", "N2", "H2", "NH3", "CO", "NO2", "SO2", "Cl2", "F2"})


class Species:
    """One side entry of the balanced reaction."""

    __slots__ = ("material", "amount_raw", "variables", "material_ref")

    def __init__(self, raw: Any, what: str) -> None:
        if not isinstance(raw, dict) or not isinstance(raw.get("material"), str) or not raw["material"].strip():
            raise RecordRejected("unparsable_reaction", f"{what}: reaction entry {raw!r} names no material")
        self.material = raw["material"].strip()
        amount = raw.get("amount")
        if amount is None or (isinstance(amount, str) and not amount.strip()):
            raise RecordRejected("non_numeric_amount", f"{what}: {self.material} has no amount")
        self.amount_raw = amount.strip() if isinstance(amount, str) else amount
        try:
            number = as_number(self.amount_raw)
            self.variables = () if number is not None else amount_variables(self.amount_raw)
        except AmountError as exc:
            raise RecordRejected("non_numeric_amount", f"{what}: {self.material}: {exc}") from None
        if number is not None and number <= 0:
            raise RecordRejected("non_positive_amount",
                                 f"{what}: {self.material} has amount {self.amount_raw} in the balanced reaction")
        self.material_ref: Material | None = None


def reaction_sides(entry: Mapping[str, Any], what: str) -> tuple[list[Species], list[Species]]:
    """Left and right side of the parsed reaction, each species checked against the reaction string's side."""
    reaction = entry.get("reaction")
    text = entry.get("reaction_string")
    if not isinstance(reaction, dict):
        raise RecordRejected("unparsable_reaction", f"{what}: no parsed reaction")
    if not isinstance(text, str) or not text.strip():
        raise RecordRejected("unparsable_reaction", f"{what}: no reaction string")
    equation = text.split(";", 1)[0]
    if equation.count("==") != 1:
        raise RecordRejected("unparsable_reaction", f"{what}: reaction string {text!r} has no single '=='")
    left_text, right_text = (s.strip() for s in equation.split("=="))
    if not left_text or not right_text:
        raise RecordRejected("unparsable_reaction", f"{what}: reaction string {text!r} has an empty side")
    sides = []
    for key, side_text in (("left_side", left_text), ("right_side", right_text)):
        items = reaction.get(key)
        if not isinstance(items, list) or not items:
            raise RecordRejected("unparsable_reaction", f"{what}: reaction {key} is empty")
        species = [Species(item, what) for item in items]
        for s in species:
            if s.material not in side_text:
                raise RecordRejected("unparsable_reaction",
                                     f"{what}: {s.material!r} is not on that side of {text!r}")
        sides.append(species)
    return sides[0], sides[1]


def check_signs(species: list[Species], values: Mapping[str, float], what: str) -> None:
    """Reject symbolic amounts that are negative (``-x``, ``-1+x``) for small and for moderate variables alike.

    Variables without a value are tried at 1e-6 and at about 0.1, so that ``0.02-x`` stays valid. Gases are left
    alone: the balancer moves O2 or CO2 across sides as x changes (``0.25*y O2`` with y = -0.02 is O2 taken up).
    """
    for s in species:
        if not s.variables or s.material in _BALANCING_GASES:
            continue
        unknown = [n for n in s.variables if n not in values]
        small = evaluate_amount(s.amount_raw, {**values, **{n: 1e-6 for n in unknown}})
        moderate = evaluate_amount(s.amount_raw, {**values, **dict(zip(unknown, _BALANCE_PROBES))})
        if small is not None and moderate is not None and small < -1e-9 and moderate < -1e-9:
            raise RecordRejected("non_positive_amount",
                                 f"{what}: {s.material} has amount {s.amount_raw}, negative in the balanced reaction")


def worst_imbalance(left: list[Species], right: list[Species], values: Mapping[str, float],
             substitution: Mapping[str, str]) -> float | None:
    """Largest element imbalance in units of its tolerance (<= 1 is balanced); None when it cannot be computed.

    Variables without a value are probed at fixed irrational-looking values: a balance that holds for all x holds
    there. The tolerance allows the rounding of written amounts (``0.167 Pr6O11``) and 1 % of the element's flow.
    """
    names = sorted({n for s in left + right for n in s.variables}
                   | {n for s in left + right if s.material_ref for n in s.material_ref.variables})
    probe = dict(values)
    for i, name in enumerate(n for n in names if n not in values):
        probe[name] = _BALANCE_PROBES[i % len(_BALANCE_PROBES)] + 0.01 * (i // len(_BALANCE_PROBES))
    net: dict[str, float] = {}
    flow: dict[str, float] = {}
    slack: dict[str, float] = {}
    for sign, side in ((1.0, left), (-1.0, right)):
        for s in side:
            amount = evaluate_amount(s.amount_raw, probe)
            if s.material_ref is not None:
                counts = s.material_ref.element_amounts(probe, substitution)
            else:
                found = species_counts(s.material)
                counts = None if found is None else {substitution.get(k, k): v for k, v in found}
            if amount is None or counts is None:
                return None
            for symbol, n in counts.items():
                net[symbol] = net.get(symbol, 0.0) + sign * amount * n
                flow[symbol] = flow.get(symbol, 0.0) + abs(amount * n)
                slack[symbol] = slack.get(symbol, 0.0) + _BALANCE_ROUNDING * abs(n)
    return max((abs(net[e]) / (_BALANCE_RELATIVE * flow[e] + slack[e] + 1e-9) for e in net), default=0.0)
