"""Amounts as the miner writes them: numbers, or arithmetic expressions in variables (``0.5-0.5*x``, ``3z/2``)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

class AmountError(ValueError):
    """An amount that is neither a number nor an arithmetic expression in variables."""


_AMOUNT_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d*)?|\.\d+)|(?P<name>[^\W\d]\w*)|(?P<op>[-+*/()]))")
_VARIABLE_NAME = re.compile(r"[^\W\d_]\d*|del_\w+")
DEFICIENCY_VARIABLES = frozenset({"del_O", "δ"})


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
    if as_number(text) is not None:
        return ()
    return _compile_amount(text)[1]


def evaluate_amount(text: Any, values: Mapping[str, float]) -> float | None:
    """The value of an amount given variable values; None when a variable has no value."""
    number = as_number(text)
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


def as_number(text: Any) -> float | None:
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
