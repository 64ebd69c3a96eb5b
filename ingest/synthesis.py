"""Text-mined synthesis recipes (Kononova et al., Sci. Data 6, 203, 2019): one recipe per balanced reaction.

Files are ``{"release_date": ..., "reactions": [...]}`` (a bare list of reactions is accepted too), read as a stream
so that a release never has to fit in memory. Two dialects of the same family are read by the same code:

* the 2019 solid-state release: lists everywhere, units ``C`` and ``h``, variable values as
  ``{"values", "min_value", "max_value"}``, no ``synthesis_type``;
* the later releases (sol-gel, solid-state 2020): a ``synthesis_type`` field, ``null`` or a string where the first
  has a list (atmosphere, device, media), variable values as plain lists, units spelled ``°C``, ``K``, ``hours``,
  ``min``, ``day``, ``hrs``, and the material fields ``material_name``, ``phase`` and ``is_acronym``.

Identity: ``record_id`` is ``<doi, lower case>:<sha1 of paragraph, target and reaction string>``. The source has no
ids, and these fields tell its recipes apart. The 2019 release holds 2,183 recipes twice, identical but for the case
of their DOI (RSC papers): they share an id and the framework rejects the repeat as ``duplicate_id``. Records that
share the id fields but differ in anything else get ``~2``, ``~3`` suffixes in file order, so only true repeats are
rejected.

Composition of a recipe (``MaterialRecord.formula``): the target's nominal composition, with the reaction's element
substitution (``M = Fe``) applied, variables replaced where the record gives one value, and oxygen deficiency
(``del_O``) taken as 0. A target whose variables take several values (a series, ``x = 0.1 ... 0.5``) gets the first
concrete composition in ``targets_string`` that matches it, and ``extra["formula_source"]`` says so; the symbolic
text stays in the target participant. Only a target that gives no composition at all is rejected
(``variable_stoichiometry``).

Participants: the target, every species of the reaction's left side (named precursors and the species the
balancing added: O2, H2O, ions) and the named precursors that the reaction leaves out (dopant sources, amount
unknown), then the right side's byproducts. Amounts are kept as written; ``amount`` is their value in this recipe
(symbolic amounts evaluated where the variables have one value, else None). Ions (``[OH-]``) get no composition.

Operations keep their order, type, token and non-empty raw conditions; temperatures become kelvin, times hours
(min and max over every value given), atmospheres one of air, O2, N2, Ar, H2, vacuum, other (raw text kept), and
the mixing device and media are joined into text. Flags: ``n_precursors`` counts the named precursors,
``has_conditions`` means some operation has a normalised condition, ``max_temperature_k`` is the highest
temperature of any operation, ``has_pure_element_product`` ignores the gases a reaction releases (O2, N2, H2...).

Rejected records: ``invalid_record`` (wrong types), ``missing_target``, ``unparsable_reaction`` (no ``==``, an empty
side, sides that disagree with the reaction string), ``non_numeric_amount``, ``non_positive_amount`` (negative
coefficients, which the text-mining balancer uses to force a balance), ``unbalanced_reaction`` (element totals
differ beyond the rounding of the written amounts), ``variable_stoichiometry``, and the framework's formula codes.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from pymatgen.core import Composition
from pymatgen.core.periodic_table import Element

from matlake.schema.enums import ParticipantRole, SourceName

from .files import open_text
from .formulas import FormulaError, ParsedComposition, parse_formula
from .framework import SourceInfo
from .records import MaterialRecord, OperationData, ParticipantData, RawRecord, RecipeData, RecordRejected

info = SourceInfo(
    name=SourceName.SYNTHESIS,
    title="Text-mined inorganic synthesis recipes (solid-state and sol-gel)",
    licence="no licence file in the repository; cite the data paper",
    citation="Kononova et al., Text-mined dataset of inorganic materials synthesis recipes, Sci. Data 6, 203 (2019)",
    homepage="https://github.com/CederGroupHub/text-mined-synthesis_public",
)

SOLID_STATE = "solid-state"
SOL_GEL = "sol-gel"
TARGET, PRECURSOR, BYPRODUCT = (ParticipantRole.TARGET.value, ParticipantRole.PRECURSOR.value,
                               ParticipantRole.BYPRODUCT.value)
EXCERPT_CHARS = 2000
PARAGRAPH_CHARS = 2000

# ---- files ------------------------------------------------------------------------------------------------------

_CHUNK_CHARS = 1 << 20
_MAX_VALUE_CHARS = 1 << 24
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_LINE_BREAKS = re.compile(r"\n\s*")  # JSON strings escape their line breaks, so these are all indentation


def dataset(path: Path) -> str:
    """``sol-gel`` or ``solid-state``: from the file name, else from the first record's ``synthesis_type``."""
    by_name = _dataset_from_name(path.name)
    if by_name is not None:
        return by_name
    try:
        with open_text(path) as fh:
            first = next(_iter_reactions(fh), None)
    except (OSError, EOFError, ValueError):
        return SOLID_STATE  # read() will record why the file cannot be read
    kind = first[0].get("synthesis_type") if first is not None and isinstance(first[0], dict) else None
    return SOL_GEL if isinstance(kind, str) and _slug(kind) in ("sol-gel", "solgel") else SOLID_STATE


def _dataset_from_name(name: str) -> str | None:
    name = name.lower().replace("_", "-")
    if "sol-gel" in name or "solgel" in name:
        return SOL_GEL
    if "solid-state" in name or "solidstate" in name:
        return SOLID_STATE
    return None


def read(path: Path) -> Iterator[RawRecord]:
    """Stream the reactions of one file; each record's key is its ``record_id``."""
    variants: dict[str, list[str]] = {}
    with open_text(path) as fh:
        for position, (payload, text) in enumerate(_iter_reactions(fh)):
            key = record_key(payload) if isinstance(payload, dict) else None
            if key is not None:
                digest = hashlib.sha1(_doi_folded(payload, text).encode()).hexdigest()
                seen = variants.setdefault(key, [])
                if digest not in seen:
                    seen.append(digest)
                index = seen.index(digest)
                key = key if index == 0 else f"{key}~{index + 1}"
            excerpt = _LINE_BREAKS.sub("", text[:4 * EXCERPT_CHARS])[:EXCERPT_CHARS]
            yield RawRecord(file=str(path), position=position, payload=payload, key=key, excerpt=excerpt)


def _doi_folded(entry: Mapping[str, Any], text: str) -> str:
    """The record's text with its DOI in lower case: the release holds 2,183 recipes twice, once per DOI case."""
    doi = entry.get("doi")
    return text.replace(doi, doi.lower()) if isinstance(doi, str) and doi != doi.lower() else text


def record_key(entry: Mapping[str, Any]) -> str:
    """``<doi>:<16 hex digits>`` from the paragraph, the target as written and the reaction string.

    DOIs are case-insensitive, so the key uses the lower-case DOI.
    """
    target = entry.get("target")
    target_text = ""
    if isinstance(target, dict):
        target_text = target.get("material_formula") or target.get("material_string") or ""
    parts = (entry.get("paragraph_string"), target_text, entry.get("reaction_string"))
    digest = hashlib.sha1("\x1f".join("" if p is None else str(p) for p in parts).encode()).hexdigest()[:16]
    doi = entry.get("doi")
    return f"{doi.strip().lower() if isinstance(doi, str) and doi.strip() else 'no-doi'}:{digest}"


class _JsonStream:
    """One JSON text read a chunk at a time: whole values are decoded by the C scanner, never the whole file."""

    def __init__(self, fh: IO[str]) -> None:
        self.fh = fh
        self.buf = ""
        self.pos = 0
        self.offset = 0
        self.eof = False

    def _fill(self) -> bool:
        if self.eof:
            return False
        chunk = self.fh.read(_CHUNK_CHARS)
        if not chunk:
            self.eof = True
            return False
        self.offset += self.pos
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0
        return True

    def peek(self) -> str:
        """The next character that is not whitespace ('' at the end of the text)."""
        while True:
            self.pos = _WHITESPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def expect(self, char: str) -> None:
        found = self.peek()
        if found != char:
            raise ValueError(f"malformed JSON at character {self.offset + self.pos}: expected {char!r}, "
                             f"found {found or 'end of file'!r}")
        self.pos += 1

    def value(self) -> tuple[Any, str]:
        """The next JSON value and its text."""
        self.peek()
        while True:
            try:
                obj, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if len(self.buf) - self.pos > _MAX_VALUE_CHARS or not self._fill():
                    raise ValueError(f"malformed or truncated JSON at character {self.offset + exc.pos}: "
                                     f"{exc.msg}") from None
                continue
            if end == len(self.buf) and self._fill():  # a number may go on in the next chunk
                continue
            text = self.buf[self.pos:end]
            self.pos = end
            return obj, text

    def array(self) -> Iterator[tuple[Any, str]]:
        self.expect("[")
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            yield self.value()
            char = self.peek()
            self.pos += 1
            if char == "]":
                return
            if char != ",":
                raise ValueError(f"malformed JSON at character {self.offset + self.pos - 1}: expected ',' or ']' "
                                 f"between reactions, found {char or 'end of file'!r}")


def _iter_reactions(fh: IO[str]) -> Iterator[tuple[Any, str]]:
    """Each element of the top-level ``reactions`` array (or of a top-level array), with its JSON text."""
    stream = _JsonStream(fh)
    first = stream.peek()
    if first == "\ufeff":  # a byte-order mark written by some editors
        stream.pos += 1
        first = stream.peek()
    if first == "[":
        yield from stream.array()
    elif first == "{":
        stream.pos += 1
        found = False
        while stream.peek() != "}":
            key, _ = stream.value()
            stream.expect(":")
            if key == "reactions":
                if stream.peek() != "[":
                    raise ValueError("'reactions' is not a JSON array")
                found = True
                yield from stream.array()
            else:
                stream.value()
            if stream.peek() == ",":
                stream.pos += 1
            elif stream.peek() != "}":
                stream.expect("}")
        stream.pos += 1
        if not found:
            raise ValueError("the JSON object has no 'reactions' array")
    else:
        raise ValueError(f"not a recipe file: expected a JSON object or array, found {first or 'nothing'!r}")
    if stream.peek():
        raise ValueError(f"unexpected data after the JSON text at character {stream.offset + stream.pos}")


# ---- amounts: numbers and expressions in variables ---------------------------------------------------------------

class AmountError(ValueError):
    """An amount that is neither a number nor an arithmetic expression in variables."""


_AMOUNT_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d*)?|\.\d+)|(?P<name>[^\W\d]\w*)|(?P<op>[-+*/()]))")
_VARIABLE_NAME = re.compile(r"[^\W\d_]\d*|del_\w+")
_DEFICIENCY_VARIABLES = frozenset({"del_O", "δ"})


@lru_cache(maxsize=100_000)
def _compile_amount(text: str) -> tuple[Any, tuple[str, ...]]:
    """Byte code and variable names of an amount such as ``0.5-0.5*x`` or ``3z/2`` (implicit products allowed)."""
    out: list[str] = []
    names: list[str] = []
    pos, previous = 0, None
    text = text.strip()
    if not text:
        raise AmountError("empty amount")
    while pos < len(text):
        m = _AMOUNT_TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise AmountError(f"amount {text!r}: cannot read {text[pos:].strip()!r}")
        pos = m.end()
        kind = m.lastgroup
        token = m[kind]
        if kind == "num" and previous in ("operand", ")"):
            raise AmountError(f"amount {text!r}: two numbers in a row")
        if (kind == "name" or token == "(") and previous in ("operand", ")"):
            out.append("*")
        if kind == "name":
            if not _VARIABLE_NAME.fullmatch(token):
                raise AmountError(f"amount {text!r}: {token!r} is not a number or a variable")
            names.append(token)
            out.append(f"v[{token!r}]")
            previous = "operand"
        else:
            out.append(token)
            previous = "operand" if kind == "num" else token if token == ")" else "operator"
    try:
        code = compile(" ".join(out), "<amount>", "eval")
    except SyntaxError:
        raise AmountError(f"amount {text!r} is not an arithmetic expression") from None
    return code, tuple(dict.fromkeys(names))


def amount_variables(text: str) -> tuple[str, ...]:
    """The variables an amount uses (none for a number); raises :class:`AmountError`."""
    if _number(text) is not None:
        return ()
    return _compile_amount(text)[1]


def evaluate_amount(text: Any, values: Mapping[str, float]) -> float | None:
    """The value of an amount given variable values; None when a variable has no value."""
    number = _number(text)
    if number is not None:
        return number
    if not isinstance(text, str):
        raise AmountError(f"amount {text!r} is not text or a number")
    code, names = _compile_amount(text)
    if any(name not in values for name in names):
        return None
    try:
        result = float(eval(code, {"__builtins__": {}}, {"v": values}))  # noqa: S307 - compiled from our tokens
    except ZeroDivisionError:
        raise AmountError(f"amount {text!r} divides by zero") from None
    return result if math.isfinite(result) else None


def _number(text: Any) -> float | None:
    """The amount as a number, None for an expression; raises for what is neither."""
    if type(text) is str:
        return _number_text(text)
    if isinstance(text, bool) or not isinstance(text, int | float):
        raise AmountError(f"amount {text!r} is not text or a number")
    if not math.isfinite(text):
        raise AmountError(f"amount {text!r} is not finite")
    return float(text)


@lru_cache(maxsize=100_000)
def _number_text(text: str) -> float | None:
    if "_" in text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value):
        raise AmountError(f"amount {text!r} is not finite")
    return value


# ---- materials ----------------------------------------------------------------------------------------------------

_ION = re.compile(r"^\[(?P<body>.+?)(?:\s+\d*|\^\d*)?[+-]+\]$")
_LEADING_COEFFICIENT = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)?\s*(.*)$", re.S)
_ADDUCT = re.compile(r"[·•∙⋅*]")
_SYMBOLS = frozenset(el.symbol for el in Element)
_GAS_ELEMENTS = frozenset({"O", "N", "H", "F", "Cl"})
_ORGANIC_WORDS = re.compile(
    r"acid|glycol|citrate|acetate|alcohol|ethanol|methanol|urea|oxalate|glycine|ethylene|propyl|butyl|stearic|"
    r"acetylacetonate|alkoxide|ethoxide|methoxide|isopropoxide|butoxide|pva|peg|ctab|edta|polyvinyl|amine|sucrose",
    re.I,
)


class _Material:
    """One material of a record (target or precursor): raw fields and its element amounts, resolved where possible."""

    __slots__ = ("raw", "formula_text", "parts", "amounts_vars", "elements_vars", "additives", "deficient", "mp_id",
                 "variables", "_amounts_for", "_amounts")

    def __init__(self, raw: Mapping[str, Any], what: str) -> None:
        self.raw = raw
        self.formula_text = _text(raw.get("material_formula")) or _text(raw.get("material_string")) or ""
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
            self.parts.append((_text(part.get("formula")) or "", amount, elements))
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
        self.mp_id = _text(raw.get("mp_id"))
        self._amounts_for: tuple[Mapping[str, float], Mapping[str, str]] | None = None
        self._amounts: dict[str, float] | None = None

    def names(self) -> set[str]:
        """Every spelling by which the reaction may name this material."""
        names = {self.formula_text, _text(self.raw.get("material_string")) or ""}
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
                if symbol not in _SYMBOLS:
                    return None
                total[symbol] = total.get(symbol, 0.0) + scale * evaluate_amount(text, values)
        return total

    def is_nonstoichiometric(self) -> bool:
        if self.deficient or "δ" in self.formula_text or "±" in self.formula_text:
            return True
        return not self.variables.isdisjoint(_DEFICIENCY_VARIABLES)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list):
        return "; ".join(t for t in (_text(v) for v in value) if t) or None
    return str(value)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "no", "none", "null", "0")
    return bool(value)


def _slug(text: str) -> str:
    return text.strip().lower().replace("_", "-").replace(" ", "-")


def _variable_values(materials: Iterable[_Material]) -> dict[str, float]:
    """Variables that take exactly one value in the record (the first material that gives one wins)."""
    values: dict[str, float] = {}
    for material in materials:
        for name, spec in material.amounts_vars.items():
            if name in values:
                continue
            found = _spec_values(spec)
            if len(found) == 1:
                values[name] = found.pop()
    for name in _DEFICIENCY_VARIABLES:
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


def _element_substitution(reaction: Mapping[str, Any], materials: Iterable[_Material]) -> dict[str, str]:
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


def _parsed(formula: str | None) -> ParsedComposition | None:
    if not formula:
        return None
    try:
        return parse_formula(formula)
    except FormulaError:
        return None


def _best_formula(material: _Material, values: Mapping[str, float], substitution: Mapping[str, str]) -> str | None:
    """The material's formula as written when it parses to the same composition, else one built from its amounts.

    Written text can parse to the wrong composition (``Co(NO3)3.6H2O`` reads as Co(NO3)3.6 + H2O), so it is
    used only when it agrees with the miner's element amounts.
    """
    amounts = material.element_amounts(values, substitution)
    written = _parsed(material.formula_text)
    if not amounts:
        return material.formula_text if written is not None and not material.variables else None
    if written is not None and _same_composition(written, amounts):
        return material.formula_text
    built = _formula_from_amounts(amounts)
    return built if _parsed(built) is not None else None


def _same_composition(parsed: ParsedComposition, amounts: Mapping[str, float]) -> bool:
    present = {el: v for el, v in amounts.items() if v > 1e-9}
    if present.keys() != parsed.fractions.keys():
        return False
    total = math.fsum(present.values())
    return all(abs(v / total - parsed.fractions[el]) <= 1e-4 * parsed.fractions[el] for el, v in present.items())


@lru_cache(maxsize=20_000)
def _species_counts(text: str) -> tuple[tuple[str, float], ...] | None:
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


def _is_ion(text: str) -> bool:
    return _ION.match(text.strip()) is not None


def _is_organic(formula_text: str, amounts: Mapping[str, float] | None) -> bool:
    """Carbon and hydrogen outside carbonate groups (acetates, citrates, oxalate hydrates), or an organic name."""
    if amounts is not None:
        return "C" in amounts and "H" in amounts and "CO3" not in formula_text
    return bool(_ORGANIC_WORDS.search(formula_text))


# ---- conditions ---------------------------------------------------------------------------------------------------

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


def _value_list(value: Any) -> list[Any]:
    """A condition as a list: ``None`` and ``""`` are empty, a scalar or an object is one item."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [v for v in value if v is not None and v != ""]
    return [value]


def _numbers(spec: Mapping[str, Any]) -> list[float]:
    found = []
    for item in [*_value_list(spec.get("values")), spec.get("min_value"), spec.get("max_value")]:
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


def _operation(position: int, raw: Any, what: str) -> OperationData:
    """One operation; its raw conditions keep only the entries with a value (dialects differ in null vs [])."""
    if not isinstance(raw, dict):
        raise RecordRejected("invalid_record", f"{what}: operation {position} is not an object")
    conditions = raw.get("conditions")
    if conditions is not None and not isinstance(conditions, dict):
        raise RecordRejected("invalid_record", f"{what}: conditions of operation {position} are not an object")
    kind, token = _text(raw.get("type")) or "unknown", _text(raw.get("token"))
    conditions = {k: v for k, v in (conditions or {}).items() if v is not None and v != "" and v != [] and v != {}}
    if not conditions:
        return OperationData(position=position, type=kind, token=token)
    temperatures = _temperatures_k(_value_list(conditions.get("heating_temperature")))
    times = _times_h(_value_list(conditions.get("heating_time")))
    atmospheres = [str(a) for a in _value_list(conditions.get("heating_atmosphere"))]
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
        device=_text(_value_list(conditions.get("mixing_device"))),
        media=_text(_value_list(conditions.get("mixing_media"))),
    )


def _has_conditions(op: OperationData) -> bool:
    return any(v is not None for v in (op.temperature_max_k, op.time_max_h, op.atmosphere, op.device, op.media))


# ---- reactions ----------------------------------------------------------------------------------------------------

_BALANCE_PROBES = (0.1234567, 0.2345671, 0.0345612, 0.1456723, 0.0567234, 0.1678345, 0.0789456, 0.1890567)
_BALANCE_RELATIVE = 0.01
_BALANCE_ROUNDING = 0.0015
_BALANCING_GASES = frozenset({"O2", "CO2", "H2O", "N2", "H2", "NH3", "CO", "NO2", "SO2", "Cl2", "F2"})


class _Species:
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
            number = _number(self.amount_raw)
            self.variables = () if number is not None else amount_variables(self.amount_raw)
        except AmountError as exc:
            raise RecordRejected("non_numeric_amount", f"{what}: {self.material}: {exc}") from None
        if number is not None and number <= 0:
            raise RecordRejected("non_positive_amount",
                                 f"{what}: {self.material} has amount {self.amount_raw} in the balanced reaction")
        self.material_ref: _Material | None = None


def _sides(entry: Mapping[str, Any], what: str) -> tuple[list[_Species], list[_Species]]:
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
        species = [_Species(item, what) for item in items]
        for s in species:
            if s.material not in side_text:
                raise RecordRejected("unparsable_reaction",
                                     f"{what}: {s.material!r} is not on that side of {text!r}")
        sides.append(species)
    return sides[0], sides[1]


def _check_signs(species: list[_Species], values: Mapping[str, float], what: str) -> None:
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


def _balance(left: list[_Species], right: list[_Species], values: Mapping[str, float],
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
                found = _species_counts(s.material)
                counts = None if found is None else {substitution.get(k, k): v for k, v in found}
            if amount is None or counts is None:
                return None
            for symbol, n in counts.items():
                net[symbol] = net.get(symbol, 0.0) + sign * amount * n
                flow[symbol] = flow.get(symbol, 0.0) + abs(amount * n)
                slack[symbol] = slack.get(symbol, 0.0) + _BALANCE_ROUNDING * abs(n)
    return max((abs(net[e]) / (_BALANCE_RELATIVE * flow[e] + slack[e] + 1e-9) for e in net), default=0.0)


# ---- one record ---------------------------------------------------------------------------------------------------

def normalise(raw: RawRecord) -> MaterialRecord:
    """One reaction -> one recipe record, or :class:`RecordRejected` with the reason."""
    entry = raw.payload
    if not isinstance(entry, dict):
        raise RecordRejected("invalid_record", f"record {raw.position} is not a JSON object", raw.key)
    key = raw.key or record_key(entry)
    what = f"recipe {key}"
    try:
        return _recipe(entry, key, what, raw.file)
    except RecordRejected as exc:
        exc.key = exc.key or key
        raise
    except AmountError as exc:
        raise RecordRejected("non_numeric_amount", f"{what}: {exc}", key) from None


def _recipe(entry: dict[str, Any], key: str, what: str, file: str) -> MaterialRecord:
    target_raw = entry.get("target")
    if not isinstance(target_raw, dict) or not (
        _text(target_raw.get("material_formula")) or _text(target_raw.get("material_string"))
        or target_raw.get("composition")
    ):
        raise RecordRejected("missing_target", f"{what}: the record names no target material")
    target = _Material(target_raw, f"{what} target")
    precursors_raw = entry.get("precursors") or []
    if not isinstance(precursors_raw, list) or not all(isinstance(p, dict) for p in precursors_raw):
        raise RecordRejected("invalid_record", f"{what}: precursors is not a list of objects")
    precursors = [_Material(p, f"{what} precursor {i}") for i, p in enumerate(precursors_raw)]
    operations_raw = entry.get("operations") or []
    if not isinstance(operations_raw, list):
        raise RecordRejected("invalid_record", f"{what}: operations is not a list")

    left, right = _sides(entry, what)
    reaction = entry["reaction"]
    values = _variable_values([target, *precursors])
    substitution = _element_substitution(reaction, [target, *precursors])

    target_names = target.names()
    target_species = next((s for s in right if s.material in target_names), right[0])
    target_species.material_ref = target
    by_name = {}
    for p in precursors:
        for name in p.names():
            by_name.setdefault(name, p)
    for s in left:
        s.material_ref = by_name.get(s.material)

    _check_signs(left + right, values, what)
    formula, formula_source = _target_formula(target, values, substitution, entry.get("targets_string"), what)
    imbalance = _balance(left, right, values, substitution)
    if imbalance is not None and imbalance > 1.0:
        raise RecordRejected("unbalanced_reaction",
                             f"{what}: {entry['reaction_string']!r} does not balance (worst element off by "
                             f"{imbalance:.1f} times its rounding tolerance)")

    participants = _participants(target, target_species, formula, left, right, precursors, values, substitution,
                                 reaction)
    operations = [_operation(i, op, what) for i, op in enumerate(operations_raw)]
    temperatures = [op.temperature_max_k for op in operations if op.temperature_max_k is not None]
    flags = {
        "n_precursors": len(precursors),
        "has_conditions": any(_has_conditions(op) for op in operations),
        "has_nonstoichiometric": any(p.is_nonstoichiometric for p in participants),
        "has_organic": any(p.is_organic for p in participants),
        "has_pure_element_product": any(_is_pure_element_product(p) for p in participants),
        "max_temperature_k": max(temperatures, default=None),
    }
    synthesis_type = _text(entry.get("synthesis_type")) or _dataset_from_name(Path(file).name) or SOLID_STATE
    paragraph = _text(entry.get("paragraph_string"))
    extra = {
        "formula_source": formula_source,
        "target_material_string": _text(target_raw.get("material_string")),
        "targets_string": _value_list(entry.get("targets_string")) or None,
        "element_substitution": dict(substitution) or None,
        "variables": dict(sorted((k, v) for k, v in values.items() if k not in _DEFICIENCY_VARIABLES)) or None,
        "additives": target.additives or None,
        "balance": "checked" if imbalance is not None else "unchecked",
        **{k: target_raw[k] for k in ("material_name", "phase", "is_acronym") if target_raw.get(k) is not None},
    }
    recipe = RecipeData(
        doi=_text(entry.get("doi")),
        synthesis_type=synthesis_type,
        target_formula=formula,
        reaction_string=entry["reaction_string"],
        paragraph_excerpt=paragraph[:PARAGRAPH_CHARS] if paragraph else None,
        participants=participants,
        operations=operations,
        flags=flags,
        extra={k: v for k, v in extra.items() if v is not None},
    )
    return MaterialRecord(record_id=key, formula=formula, recipes=[recipe])


def _target_formula(target: _Material, values: Mapping[str, float], substitution: Mapping[str, str],
                    targets_string: Any, what: str) -> tuple[str, str]:
    """The recipe's composition and where it came from (see the module docstring)."""
    formula = _best_formula(target, values, substitution)
    if formula is not None:
        return formula, "material_formula" if formula == target.formula_text else "composition"
    candidate = _concrete_target(target, substitution, targets_string)
    if candidate is not None:
        return candidate, "targets_string"
    unresolved = sorted(target.variables - set(values)) or sorted(
        {el for _, _, els in target.parts for el in els if substitution.get(el, el) not in _SYMBOLS})
    raise RecordRejected("variable_stoichiometry",
                         f"{what}: target {target.formula_text!r} has no single composition "
                         f"(no value for {', '.join(unresolved) or 'its amounts'}) and no concrete targets_string")


def _concrete_target(target: _Material, substitution: Mapping[str, str], targets_string: Any) -> str | None:
    """The first concrete target with all of the target's elements, else the first with some of them, else any.

    Series list their end members too (``x = 0`` drops an element), so a full match is preferred.
    """
    elements = {substitution.get(el, el) for _, _, els in target.parts for el in els}
    within = first = None
    for text in _value_list(targets_string):
        parsed = _parsed(text) if isinstance(text, str) else None
        if parsed is None:
            continue
        found = set(parsed.elements)
        if found == elements:
            return text
        if within is None and found <= elements:
            within = text
        first = first or text
    return within or first


def _participants(target: _Material, target_species: _Species, target_formula: str, left: list[_Species],
                  right: list[_Species], precursors: list[_Material], values: Mapping[str, float],
                  substitution: Mapping[str, str], reaction: Mapping[str, Any]) -> list[ParticipantData]:
    rows: list[ParticipantData] = []
    target_amounts = target.element_amounts(values, substitution)
    rows.append(ParticipantData(
        role=TARGET, position=0, formula_raw=target.formula_text or target_species.material,
        formula=target_formula, amount_raw=str(target_species.amount_raw),
        amount=evaluate_amount(target_species.amount_raw, values),
        is_symbolic=bool(target_species.variables or target.variables - _DEFICIENCY_VARIABLES),
        is_organic=_is_organic(target.formula_text, target_amounts),
        is_nonstoichiometric=target.is_nonstoichiometric(),
        substitutions=_substitutions(target, reaction.get("element_substitution")), mp_id=target.mp_id,
    ))
    used = set()
    for s in left:
        rows.append(_participant(PRECURSOR, len(rows), s, s.material_ref, values, substitution))
        if s.material_ref is not None:
            used.add(id(s.material_ref))
    for p in precursors:
        if id(p) not in used:
            rows.append(_participant(PRECURSOR, len(rows), None, p, values, substitution))
    for s in right:
        if s is not target_species:
            rows.append(_participant(BYPRODUCT, len(rows), s, None, values, substitution))
    return rows


def _participant(role: str, position: int, species: _Species | None, material: _Material | None,
                 values: Mapping[str, float], substitution: Mapping[str, str]) -> ParticipantData:
    """A precursor or byproduct; ``species`` is None for a named precursor that the reaction leaves out."""
    if material is not None:
        formula_raw = material.formula_text or (species.material if species else "")
        formula = _best_formula(material, values, substitution)
        amounts = material.element_amounts(values, substitution)
        symbolic = bool(material.variables - _DEFICIENCY_VARIABLES)
        nonstoichiometric = material.is_nonstoichiometric()
        extra = _substitutions(material, None)
        mp_id = material.mp_id
    else:
        formula_raw = species.material
        ion = _is_ion(formula_raw)
        formula = None if ion else formula_raw if _parsed(formula_raw) is not None else None
        counts = None if ion else _species_counts(formula_raw)
        amounts = dict(counts) if counts else None
        symbolic = nonstoichiometric = False
        extra, mp_id = None, None
    amount_raw = None if species is None else str(species.amount_raw)
    return ParticipantData(
        role=role, position=position, formula_raw=formula_raw, formula=formula, amount_raw=amount_raw,
        amount=None if species is None else evaluate_amount(species.amount_raw, values),
        is_symbolic=bool(symbolic or (species is not None and species.variables)),
        is_organic=_is_organic(formula_raw, amounts), is_nonstoichiometric=nonstoichiometric,
        substitutions=extra, mp_id=mp_id,
    )


def _substitutions(material: _Material, element_substitution: Any) -> dict[str, Any] | None:
    found = {
        "element_substitution": element_substitution or None,
        "elements_vars": material.elements_vars or None,
        "amounts_vars": material.amounts_vars or None,
        "additives": material.additives or None,
        "oxygen_deficiency": material.raw.get("oxygen_deficiency") or None,
    }
    found = {k: v for k, v in found.items() if v is not None}
    return found or None


def _is_pure_element_product(p: ParticipantData) -> bool:
    """A target or byproduct made of one element, other than the gases a reaction releases (O2, N2, H2, ...)."""
    if p.role == PRECURSOR or p.formula is None:
        return False
    parsed = _parsed(p.formula)
    if parsed is None or len(parsed.elements) != 1:
        return False
    return p.role == TARGET or parsed.elements[0] not in _GAS_ELEMENTS


def default_files() -> list[Path]:
    """The shared 2019 solid-state release, when present."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "synthesis" / \
        "solid-state_dataset_2019-12-03.json.xz"
    return [path] if path.exists() else []
