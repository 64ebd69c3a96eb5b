"""Reading the recipe files: the ``reactions`` array streamed one JSON value at a time, each record's identity.

See :mod:`matlake.ingest.synthesis` for the file format and the identity rules.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from ..files import open_text
from ..records import RawRecord

SOLID_STATE = "solid-state"
SOL_GEL = "sol-gel"
EXCERPT_CHARS = 2000

_CHUNK_CHARS = 1 << 20
_MAX_VALUE_CHARS = 1 << 24
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_LINE_BREAKS = re.compile(r"\n\s*")  # JSON strings escape their line breaks, so these are all indentation


def dataset(path: Path) -> str:
    """``sol-gel`` or ``solid-state``: from the file name, else from the first record's ``synthesis_type``."""
    by_name = dataset_from_name(path.name)
    if by_name is not None:
        return by_name
    try:
        with open_text(path) as fh:
            first = next(_iter_reactions(fh), None)
    except (OSError, EOFError, ValueError):
        return SOLID_STATE  # read() will record why the file cannot be read
    kind = first[0].get("synthesis_type") if first is not None and isinstance(first[0], dict) else None
    return SOL_GEL if isinstance(kind, str) and _slug(kind) in ("sol-gel", "solgel") else SOLID_STATE


def dataset_from_name(name: str) -> str | None:
    """``sol-gel`` or ``solid-state`` when the file name says so, else None."""
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


def _slug(text: str) -> str:
    return text.strip().lower().replace("_", "-").replace(" ", "-")
