"""One material of a record (target or precursor): its element amounts with variables and placeholder elements
resolved where the record allows, the formula to store, and the small tests the flags use (ion, organic)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from pymatgen.core import Composition
from pymatgen.core.periodic_table import Element

from ..formulas import FormulaError, ParsedComposition, parse_formula
from ..records import RecordRejected
from .amounts import DEFICIENCY_VARIABLES, amount_variables, evaluate_amount

_ION = re.compile(r"^\[(?P<body>.+?)(?:\s+\d*|\^\d*)?[+-]+\]$")
_LEADING_COEFFICIENT = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)?\s*(.*)$", re.S)
_ADDUCT = re.compile(r"[·•∙⋅*]")
ELEMENT_SYMBOLS = frozenset(el.symbol for el in Element)
GAS_ELEMENTS = frozenset({"O", "N", "H", "F", "Cl"})
_ORGANIC_WORDS = re.compile(
    r"acid|glycol|citrate|acetate|alcohol|ethanol|methanol|urea|oxalate|glycine|ethylene|propyl|butyl|stearic|"
    r"acetylacetonate|alkoxide|ethoxide|methoxide|isopropoxide|butoxide|pva|peg|ctab|edta|polyvinyl|amine|sucrose",
    re.I,
)


class Material:
    """One material of a record (target or precursor): raw fields and its element amounts, resolved where possible."""

    __slots__ = ("raw", "formula_text", "parts", "amounts_vars", "elements_vars", "additives", "deficient", "mp_id",
                 "variables", "_amounts_for", "_amounts")

    def __init__(self, raw: Mapping[str, Any], what: str) -> None:
        self.raw = raw
        self.formula_text = clean_text(raw.get("material_formula")) or clean_text(raw.get("material_string")) or ""
        composition = raw.get("composition")
        if composition is None:
            composition = []
        if isinstance(composition, dict):
            composition = [composition]
        if not isinstance(composition, list) or not all(isinstance(p, dict) for p in composition):
            raise RecordRejected("invalid_record", f"{what}: composition is not a list of objects")
        self.parts: list[tuple[str, Any, dict[str, Any]]] = []
        self.variables: set[str] = set()
        for part in composition:
            elements = part.get("elements") or {}
            if not isinstance(elements, dict):
                raise RecordRejected("invalid_record", f"{what}: composition elements are not an object")
            amount = part.get("amount", "1")
            amount = "1" if amount in (None, "") else amount
            self.parts.append((clean_text(part.get("formula")) or "", amount, elements))
            self.variables.update(amount_variables(amount))
            for value in elements.values():
                self.variables.update(amount_variables(value))
        self.amounts_vars = raw.get("amounts_vars") or {}
        self.elements_vars = raw.get("elements_vars") or {}
        if not isinstance(self.amounts_vars, dict) or not isinstance(self.elements_vars, dict):
            raise RecordRejected("invalid_record", f"{what}: amounts_vars or elements_vars is not an object")
        additives = raw.get("additives") or []
        self.additives = [additives] if isinstance(additives, str) else list(additives)
        self.deficient = _truthy(raw.get("oxygen_deficiency"))
        self.mp_id = clean_text(raw.get("mp_id"))
        self._amounts_for: tuple[Mapping[str, float], Mapping[str, str]] | None = None
        self._amounts: dict[str, float] | None = None

    def names(self) -> set[str]:
        """Every spelling by which the reaction may name this material."""
        names = {self.formula_text, clean_text(self.raw.get("material_string")) or ""}
        if len(self.parts) == 1:
            names.add(self.parts[0][0])
        elif self.parts:
            names.add("·".join(p[0] for p in self.parts))
        names.discard("")
        return names

    def element_amounts(self, values: Mapping[str, float], substitution: Mapping[str, str]) -> dict[str, float] | None:
        """Element -> amount of this material, None when a variable or placeholder element has no value.

        The last result is kept: one record asks for the same values several times.
        """
        last = self._amounts_for
        if last is None or last[0] is not values or last[1] is not substitution:
            self._amounts, self._amounts_for = self._element_amounts(values, substitution), (values, substitution)
        return self._amounts

    def _element_amounts(self, values: Mapping[str, float], substitution: Mapping[str, str]) -> dict[str, float] | None:
        if not self.parts or any(v not in values for v in self.variables):
            return None
        total: dict[str, float] = {}
        for _, amount, elements in self.parts:
            scale = evaluate_amount(amount, values)
            for symbol, text in elements.items():
                symbol = substitution.get(symbol, symbol)
                if symbol not in ELEMENT_SYMBOLS:
                    return None
                total[symbol] = total.get(symbol, 0.0) + scale * evaluate_amount(text, values)
        return total

    def is_nonstoichiometric(self) -> bool:
        if self.deficient or "δ" in self.formula_text or "±" in self.formula_text:
            return True
        return not self.variables.isdisjoint(DEFICIENCY_VARIABLES)


def clean_text(value: Any) -> str | None:
    """Stripped text, a list joined with '; ' (dialects differ in string vs list); None when empty."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list):
        return "; ".join(t for t in (clean_text(v) for v in value) if t) or None
    return str(value)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "no", "none", "null", "0")
    return bool(value)


def variable_values(materials: Iterable[Material]) -> dict[str, float]:
    """Variables that take exactly one value in the record (the first material that gives one wins)."""
    values: dict[str, float] = {}
    for material in materials:
        for name, spec in material.amounts_vars.items():
            if name in values:
                continue
            found = _spec_values(spec)
            if len(found) == 1:
                values[name] = found.pop()
    for name in DEFICIENCY_VARIABLES:
        values.setdefault(name, 0.0)
    return values


def _spec_values(spec: Any) -> set[float]:
    """The distinct values of one variable: ``{"values", "min_value", "max_value"}``, a list, or a scalar."""
    if isinstance(spec, dict):
        items = list(spec.get("values") or [])
        if not items:
            low, high = spec.get("min_value"), spec.get("max_value")
            items = [low] if low is not None and low == high else []
    elif isinstance(spec, list):
        items = spec
    else:
        items = [spec]
    found = set()
    for item in items:
        try:
            value = float(item)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            found.add(value)
    return found


def resolve_placeholders(reaction: Mapping[str, Any], materials: Iterable[Material]) -> dict[str, str]:
    """Placeholder -> element: the reaction's own choice, else a placeholder with a single listed element."""
    substitution = {k: v for k, v in (reaction.get("element_substitution") or {}).items() if isinstance(v, str)}
    for material in materials:
        for name, options in material.elements_vars.items():
            options = [options] if isinstance(options, str) else options
            if name not in substitution and isinstance(options, list) and len(set(options)) == 1:
                substitution[name] = options[0]
    return substitution


def _formula_from_amounts(amounts: Mapping[str, float]) -> str | None:
    """A formula string for element amounts (zero amounts dropped); None when an amount is negative."""
    parts = []
    for symbol, value in amounts.items():
        if abs(value) < 1e-9:
            continue
        if value < 0:
            return None
        parts.append(symbol + _format_amount(value))
    return "".join(parts) or None


def _format_amount(value: float) -> str:
    rounded = round(value, 6)
    if rounded == int(rounded):
        return "" if rounded == 1 else str(int(rounded))
    return f"{rounded:.6f}".rstrip("0")


def parsed_formula(formula: str | None) -> ParsedComposition | None:
    """The parsed formula, None for text the formula parser rejects."""
    if not formula:
        return None
    try:
        return parse_formula(formula)
    except FormulaError:
        return None


def best_formula(material: Material, values: Mapping[str, float], substitution: Mapping[str, str]) -> str | None:
    """The material's formula as written when it parses to the same composition, else one built from its amounts.

    Written text can parse to the wrong composition (``Co(NO3)3.6H2O`` reads as Co(NO3)3.6 + H2O), so it is
    used only when it agrees with the miner's element amounts.
    """
    amounts = material.element_amounts(values, substitution)
    written = parsed_formula(material.formula_text)
    if not amounts:
        return material.formula_text if written is not None and not material.variables else None
    if written is not None and _same_composition(written, amounts):
        return material.formula_text
    built = _formula_from_amounts(amounts)
    return built if parsed_formula(built) is not None else None


def _same_composition(parsed: ParsedComposition, amounts: Mapping[str, float]) -> bool:
    present = {el: v for el, v in amounts.items() if v > 1e-9}
    if present.keys() != parsed.fractions.keys():
        return False
    total = math.fsum(present.values())
    return all(abs(v / total - parsed.fractions[el]) <= 1e-4 * parsed.fractions[el] for el, v in present.items())


@lru_cache(maxsize=20_000)
def species_counts(text: str) -> tuple[tuple[str, float], ...] | None:
    """Unreduced element counts of a reaction species written as a plain formula (``O2``, ``[NO3-]``, hydrates)."""
    match = _ION.match(text.strip())
    body = match["body"] if match else text
    counts: dict[str, float] = {}
    try:
        for part in _ADDUCT.split(body):
            m = _LEADING_COEFFICIENT.match(part)
            scale = float(m[1]) if m[1] else 1.0
            for symbol, value in Composition(m[2]).as_dict().items():
                counts[symbol] = counts.get(symbol, 0.0) + scale * value
    except Exception:  # pymatgen raises several types for text that is not a formula
        return None
    return tuple(counts.items()) or None


def is_ion(text: str) -> bool:
    """A bracketed ion such as ``[OH-]``: it takes part in the balance but has no composition of its own."""
    return _ION.match(text.strip()) is not None


def is_organic(formula_text: str, amounts: Mapping[str, float] | None) -> bool:
    """Carbon and hydrogen outside carbonate groups (acetates, citrates, oxalate hydrates), or an organic name."""
    if amounts is not None:
        return "C" in amounts and "H" in amounts and "CO3" not in formula_text
    return bool(_ORGANIC_WORDS.search(formula_text))
