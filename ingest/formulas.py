"""Composition normalisation shared by every ingester: one key per composition, whatever the spelling.

Accepted text: element symbols with optional amounts; nested ``()``, ``[]``, ``{}`` with multipliers; adducts
and hydrates joined by ``·``, ``•``, ``∙``, ``⋅`` or ``*``, each part with an optional leading coefficient
(``CuSO4·5H2O`` is CuSO4 + 5 H2O); whitespace between tokens (``Fe2 O3``). ASCII ``.`` is always a decimal point,
so ``CuSO4.5H2O`` is CuSO4.5 + H2O, as in pymatgen: it cannot be told apart from ``Bi2Sr2CaCu2O8.5``.

Canonical form, ``ParsedComposition.formula``:

* Elements in pymatgen's order, by Pauling electronegativity (ties and noble gases by symbol); amounts of 1 omitted.
* Integer formula (``is_integer``) when every amount is an integer, or when the atomic fractions are those of an
  integer formula of at most 100 atoms; divided by the gcd of its amounts. ``Al1Sm1Tm1`` -> ``SmTmAl``,
  ``Hg0.7Cd0.3Te`` -> ``Cd3Hg7Te10``, ``O2`` -> ``O`` (pymatgen's ``O2`` for diatomic gases would make ``amounts``
  disagree with the formula).
* Amounts written with 4 to 7 decimals are taken as rounded and match within half a unit of their last significant
  decimal: OQMD writes 5/9 as ``0.555600``, so ``O0.555600Pr0.222200Pt0.222200`` -> ``Pr2Pt2O5``. The match is
  unique up to 100 atoms: two fractions with denominators <= 100 differ by more than 1e-4. Amounts with at most 3
  decimals, or 8 and more, are exact: ``Fe1.37O`` is not ``Fe37O27``.
* Otherwise a decimal formula, the atomic fractions to 8 significant digits with zeros kept (so that it never reads as
  rounded): ``YBa2Cu2O6.92`` -> ``Ba0.16778523Y0.083892617Cu0.16778523O0.58053691``, ``Co35.38Zr64.62`` ->
  ``Zr0.64620000Co0.35380000``. Fractions mean the same for every composition, where a scale such as "smallest
  amount = 1" reproduces the source's spelling in only one case in ten (SuperCon).

Every spelling of a composition gives the same key, and parsing a key gives the key back. One exception:
integer-written formulas stay integer at any size, so a formula of more than 100 atoms spelled with decimals
(``Ca0.4Ba1.25La1.25Cu3O6.98``) does not meet its integer spelling (``Ca40Ba125La125Cu300O698``).

The scanner is this module's own, not pymatgen's ``Composition``, because pymatgen silently accepts text that should
be rejected: it drops zero amounts (``Fe0O`` is O), reads ``D`` and ``T`` as H (so ``Sr4V2.7TI0.3O9.51``, a typo for
Tl, is a tritium iodide), ignores mismatched brackets (``(Fe]2O3``), takes exponents (``Fe1e3O``) and bare decimals
(``MnFeCoGe.216``, a formula and its space group, is MnFeCoGe0.216). ``D`` and ``T`` are rejected as
``unknown_element``: merging deuterides into hydrides would hide the isotope effect on Tc. pymatgen still supplies the
element table and the electronegativities, and the tests check that both parsers agree wherever both accept.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import NoReturn

from pymatgen.core.periodic_table import Element

_MAX_FORMULA_ATOMS = 100
_ROUNDED_DECIMALS = 4
_DECIMAL_DIGITS = 8
_EXACT_RELATIVE_TOLERANCE = 1e-9
_CACHE_SIZE = 200_000

_CLOSERS = {"(": ")", "[": "]", "{": "}"}
_TOKEN = re.compile(
    r"\s*(?:(?P<el>[A-Z][a-z]?)|(?P<num>\d+(?:\.(?P<frac>\d+))?)"
    r"|(?P<open>[(\[{])|(?P<close>[)\]}])|(?P<sep>[·•∙⋅*]))"
)
_SIMPLE = re.compile(r"(?:[A-Z][a-z]?(?:\d+(?:\.\d+)?)?)+")
_INTEGER = re.compile(r"(?:[A-Z][a-z]?\d{0,9})+")  # at most 9 digits: sums stay exact in floats and ints alike
_INTEGER_PAIR = re.compile(r"([A-Z][a-z]?)(\d*)")
_PAIR = re.compile(r"([A-Z][a-z]?)(\d+(?:\.(\d+))?)?")
_VARIABLE = re.compile(r"\s*(?:[-+−±=~]\s*\d*(?:\.\d+)?\s*[a-zδ]|\d*(?:\.\d+)?\s*[xyzδ])")
_NEGATIVE = re.compile(r"\s*[-−]\s*\d")
_ISOTOPES = {"D": "deuterium", "T": "tritium"}
_SYMBOLS = frozenset(e.symbol for e in Element)
_VARIABLE_LETTERS = frozenset("xyz")


def _electronegativity_order() -> dict[str, tuple[float, str]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {e.symbol: (e.X if not math.isnan(e.X) else math.inf, e.symbol) for e in Element}


_ORDER = _electronegativity_order()
_RANK = {symbol: rank for rank, symbol in enumerate(sorted(_ORDER, key=_ORDER.__getitem__))}  # same order, int keys


class FormulaError(ValueError):
    """A formula that cannot be normalised: ``reason_code`` is a snake_case code, ``str(err)`` names the formula."""

    reason_code: str

    def __init__(self, reason_code: str, message: str, formula: str | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.formula = formula

    def __reduce__(self):
        return type(self), (self.reason_code, str(self), self.formula)


@dataclass(frozen=True, slots=True)
class ParsedComposition:
    """A normalised composition; results are cached and shared between callers, so treat the dicts as read-only.

    ``formula`` is the key of the ``composition`` table; ``amounts`` are the amounts in it (the fractions themselves
    for a decimal formula); ``fractions`` sum to 1; ``elements`` and ``chemical_system`` are alphabetical;
    ``is_integer`` says whether ``formula`` is an integer formula.
    """

    formula: str
    amounts: dict[str, float]
    fractions: dict[str, float]
    elements: tuple[str, ...]
    chemical_system: str
    is_integer: bool

    def __hash__(self) -> int:
        return hash(self.formula)


def parse_formula(text: str) -> ParsedComposition:
    """Normalise one formula as written by a source; raises :class:`FormulaError` with a reason code."""
    result = _parse_cached(text) if isinstance(text, str) else _not_text(text)
    if isinstance(result, ParsedComposition):
        return result
    raise FormulaError(*result, formula=text if isinstance(text, str) else None)


def composition_from_amounts(amounts: Mapping[str, float]) -> ParsedComposition:
    """Normalise an element -> amount mapping (e.g. from a structure) to the same key its formula would get.

    A float carries no written precision, so its shortest repr stands in: ``0.3333`` is rounded, ``1/3`` is exact.
    """
    try:
        items = tuple(sorted((str(el), float(amount)) for el, amount in amounts.items()))
    except (TypeError, ValueError, AttributeError) as exc:
        raise FormulaError("unparsable_formula", f"amounts {amounts!r}: {exc}") from None
    result = _from_items_cached(items)
    if isinstance(result, ParsedComposition):
        return result
    raise FormulaError(*result)


def _not_text(value: object) -> tuple[str, str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "empty_formula", f"formula {value!r}: no formula given"
    return "unparsable_formula", f"formula {value!r}: expected text, got {type(value).__name__}"


@lru_cache(maxsize=_CACHE_SIZE)
def _parse_cached(text: str) -> ParsedComposition | tuple[str, str]:
    stripped = text.strip()
    if _INTEGER.fullmatch(stripped):
        parsed = _integer_formula(stripped)
        if parsed is not None:
            return parsed
    what = f"formula {text!r}"
    try:
        scanned = _scan_simple(stripped, what) if _SIMPLE.fullmatch(stripped) else _scan(stripped, what)
        return _canonical(*scanned, what)
    except FormulaError as err:
        return err.reason_code, str(err)


@lru_cache(maxsize=_CACHE_SIZE)
def _from_items_cached(items: tuple[tuple[str, float], ...]) -> ParsedComposition | tuple[str, str]:
    what = f"amounts {dict(items)!r}"
    try:
        if not items:
            raise FormulaError("empty_formula", f"{what}: no elements")
        amounts: dict[str, float] = {}
        for el, amount in items:
            _check_symbol(el, what)
            amounts[el] = amounts.get(el, 0.0) + amount
        decimals = max(_decimals(a) for a in amounts.values())
        return _canonical(amounts, decimals, decimals, what)
    except FormulaError as err:
        return err.reason_code, str(err)


def _integer_formula(text: str) -> ParsedComposition | None:
    """Most formulas (``Ac2AgIr``, ``La1Pb1Re2``): symbols with integer amounts, counted in integers end to end.

    Gives exactly what :func:`_canonical` gives for them, in two thirds of the time; None (an unknown symbol, a zero
    amount) leaves the text to the general path, which raises the error with its message.
    """
    counts: dict[str, int] = {}
    for el, number in _INTEGER_PAIR.findall(text):
        if el not in _SYMBOLS:
            return None
        n = int(number) if number else 1
        if not n:
            return None
        counts[el] = counts.get(el, 0) + n
    symbols = sorted(counts, key=_RANK.__getitem__)
    values = [counts[el] for el in symbols]
    divisor = math.gcd(*values)
    if divisor != 1:
        values = [n // divisor for n in values]
    total = sum(values)
    elements = tuple(sorted(symbols))
    return ParsedComposition(
        formula="".join([el if n == 1 else el + str(n) for el, n in zip(symbols, values)]),
        amounts=dict(zip(symbols, map(float, values))),
        fractions=dict(zip(symbols, [n / total for n in values])),
        elements=elements,
        chemical_system="-".join(elements),
        is_integer=True,
    )


def _scan_simple(text: str, what: str) -> tuple[dict[str, float], int, int]:
    """The common case, element-amount pairs only, in one regex pass."""
    amounts: dict[str, float] = {}
    decimals = written = 0
    for el, number, frac in _PAIR.findall(text):
        _check_symbol(el, what)
        if number:
            value = float(number)
            if value == 0:
                raise FormulaError("non_positive_amount", f"{what}: zero amount of {el}")
            if frac:
                written = max(written, len(frac))
                decimals = max(decimals, len(frac.rstrip("0")))
        else:
            value = 1.0
        amounts[el] = amounts.get(el, 0.0) + value
    return amounts, decimals, written


def _scan(text: str, what: str) -> tuple[dict[str, float], int, int]:
    """Expand brackets and adducts into element amounts; also return the most decimals any amount was written with."""
    if not text:
        raise FormulaError("empty_formula", f"{what}: empty")
    total: dict[str, float] = {}
    part: dict[str, float] = {}
    stack: list[tuple[dict[str, float], str]] = []
    unit: dict[str, float] | None = None
    coefficient = 1.0
    at_part_start = True
    decimals = written = 0
    pos = 0

    def commit(multiplier: float = 1.0) -> None:
        for el, amount in unit.items():
            part[el] = part.get(el, 0.0) + amount * multiplier

    def end_part() -> None:
        if not part:
            raise FormulaError("unparsable_formula", f"{what}: empty part at position {pos}")
        for el, amount in part.items():
            total[el] = total.get(el, 0.0) + amount * coefficient

    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            _fail(text, pos, what)
        pos = m.end()
        kind = m.lastgroup if m.lastgroup != "frac" else "num"
        if kind == "num":
            value = float(m["num"])
            if m["frac"]:
                written = max(written, len(m["frac"]))
                decimals = max(decimals, len(m["frac"].rstrip("0")))
            if value == 0:
                raise FormulaError("non_positive_amount", f"{what}: zero amount {m['num']!r}")
            if unit is not None:
                commit(value)
                unit = None
            elif at_part_start:
                coefficient = value
            else:
                raise FormulaError("unparsable_formula", f"{what}: number {m['num']!r} follows no element or bracket")
            at_part_start = False
            continue
        if unit is not None:
            commit()
            unit = None
        at_part_start = False
        if kind == "el":
            _check_symbol(m["el"], what)
            unit = {m["el"]: 1.0}
        elif kind == "open":
            stack.append((part, _CLOSERS[m["open"]]))
            part = {}
        elif kind == "close":
            if not stack or stack[-1][1] != m["close"]:
                raise FormulaError("unparsable_formula", f"{what}: unbalanced {m['close']!r} at position {pos - 1}")
            if not part:
                raise FormulaError("unparsable_formula", f"{what}: empty brackets at position {pos - 1}")
            unit = part
            part = stack.pop()[0]
        else:
            if stack:
                raise FormulaError("unparsable_formula", f"{what}: adduct separator inside brackets")
            end_part()
            part, coefficient, at_part_start = {}, 1.0, True
    if unit is not None:
        commit()
    if stack:
        raise FormulaError("unparsable_formula", f"{what}: unbalanced brackets, {stack[-1][1]!r} missing")
    end_part()
    return total, decimals, written


def _fail(text: str, pos: int, what: str) -> NoReturn:
    if "δ" in text or _VARIABLE.match(text, pos):
        raise FormulaError("variable_stoichiometry", f"{what}: variable amount at {text[pos:].strip()!r}")
    if _NEGATIVE.match(text, pos):
        raise FormulaError("non_positive_amount", f"{what}: negative amount at {text[pos:].strip()!r}")
    raise FormulaError("unparsable_formula", f"{what}: cannot read {text[pos:].strip()!r} at position {pos}")


def _check_symbol(symbol: str, what: str) -> None:
    if symbol in _SYMBOLS:
        return
    if symbol in _ISOTOPES:
        raise FormulaError("unknown_element", f"{what}: {symbol!r} is {_ISOTOPES[symbol]}, an isotope, not an element")
    if len(symbol) == 2 and symbol[0] in _SYMBOLS and symbol[1] in _VARIABLE_LETTERS:
        raise FormulaError("variable_stoichiometry", f"{what}: variable amount {symbol[1]!r} after {symbol[0]!r}")
    raise FormulaError("unknown_element", f"{what}: unknown element {symbol!r}")


def _decimals(amount: float) -> int:
    try:
        exponent = Decimal(repr(amount)).normalize().as_tuple().exponent
    except InvalidOperation:
        return 0
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _canonical(amounts: dict[str, float], decimals: int, written: int, what: str) -> ParsedComposition:
    symbols = sorted(amounts, key=_RANK.__getitem__)
    values = [amounts[el] for el in symbols]
    for el, amount in zip(symbols, values):
        if not 0.0 < amount < math.inf:
            code = "non_positive_amount" if amount <= 0 else "non_finite_amount"
            raise FormulaError(code, f"{what}: amount of {el} is {amount}")
    if all(map(float.is_integer, values)):
        counts = list(map(int, values))
        divisor = math.gcd(*counts)
        if divisor != 1:
            counts = [n // divisor for n in counts]
    elif _ROUNDED_DECIMALS <= decimals and written < _DECIMAL_DIGITS:
        counts = _match_rounded(values, 0.5 * 10.0**-decimals)
    else:
        counts = _match_exact(values, decimals)
    if counts is not None:
        total = sum(counts)
        formula = "".join([el if n == 1 else el + str(n) for el, n in zip(symbols, counts)])
        return _build(formula, symbols, list(map(float, counts)), [n / total for n in counts], True)
    texts = _fraction_texts(values)
    reduced = list(map(float, texts))
    reduced_total = math.fsum(reduced)
    formula = "".join([el + t for el, t in zip(symbols, texts)])
    return _build(formula, symbols, reduced, [v / reduced_total for v in reduced], False)


def _match_exact(values: list[float], decimals: int) -> list[int] | None:
    """The reduced integer formula of amounts that are exact decimals, if it has at most _MAX_FORMULA_ATOMS atoms."""
    if decimals >= _DECIMAL_DIGITS:
        return _match_rounded(values, 0.0)
    scale = 10**decimals
    scaled = [v * scale for v in values]
    counts = [round(x) for x in scaled]
    if any(abs(x - n) > _EXACT_RELATIVE_TOLERANCE * x for x, n in zip(scaled, counts)):
        return _match_rounded(values, 0.0)
    divisor = math.gcd(*counts)
    counts = [n // divisor for n in counts]
    return counts if sum(counts) <= _MAX_FORMULA_ATOMS else None


def _match_rounded(values: list[float], half_unit: float) -> list[int] | None:
    """The smallest integer formula that, times one common scale, lies within ``half_unit`` of every amount."""
    total = math.fsum(values)
    rows = [(v, v / total, half_unit + _EXACT_RELATIVE_TOLERANCE * v) for v in values]
    for atoms in range(1, _MAX_FORMULA_ATOMS + 1):
        low, high, counts = 0.0, math.inf, []
        for v, fraction, tolerance in rows:
            n = round(fraction * atoms)
            if n < 1:
                break
            low, high = max(low, (v - tolerance) / n), min(high, (v + tolerance) / n)
            if low > high:
                break
            counts.append(n)
        else:
            if sum(counts) <= _MAX_FORMULA_ATOMS:
                divisor = math.gcd(*counts)
                return [n // divisor for n in counts]
    return None


def _fraction_texts(values: list[float]) -> list[str]:
    """Atomic fractions to _DECIMAL_DIGITS significant digits, zeros kept so that a key never reads as rounded.

    Amounts that already sum to 1 within that rounding are not renormalised, so parsing a key gives it back.
    """
    total = math.fsum(values)
    if abs(total - 1.0) <= len(values) * 0.6 * 10.0**-_DECIMAL_DIGITS:
        total = 1.0
    return [_positional(v / total) for v in values]


def _positional(x: float) -> str:
    mantissa, exponent = f"{x:.{_DECIMAL_DIGITS - 1}e}".split("e")
    digits, power = mantissa.replace(".", ""), int(exponent)
    if power < 0:
        return "0." + "0" * (-power - 1) + digits
    return digits[: power + 1] + "." + digits[power + 1 :]


def _build(formula: str, symbols: list[str], amounts: list[float], fractions: list[float], is_integer: bool):
    elements = tuple(sorted(symbols))
    return ParsedComposition(
        formula=formula,
        amounts=dict(zip(symbols, amounts)),
        fractions=dict(zip(symbols, fractions)),
        elements=elements,
        chemical_system="-".join(elements),
        is_integer=is_integer,
    )
