"""Opening input files: transparent gzip/xz/bz2 decompression, checksums, and line-oriented readers."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
from pathlib import Path
from typing import IO, Any

from matlake.checksums import sha256_and_size

_OPENERS = {b"\x1f\x8b": gzip.open, b"\xfd7zXZ": lzma.open, b"BZh": bz2.open}


def open_binary(path: Path) -> IO[bytes]:
    """Open ``path`` for reading, decompressing gzip, xz or bz2 by their magic bytes (not the file name)."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    for magic, opener in _OPENERS.items():
        if head.startswith(magic):
            return opener(path, "rb")
    return open(path, "rb")


def open_text(path: Path, encoding: str = "utf-8") -> IO[str]:
    """Text view of :func:`open_binary`; undecodable bytes raise so the record is rejected, never garbled."""
    return io.TextIOWrapper(open_binary(path), encoding=encoding, newline="")


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Name, size and sha256 of a file as stored in ``source_release.files``."""
    sha256, size = sha256_and_size(path)
    return {"name": str(path), "sha256": sha256, "size_bytes": size}
