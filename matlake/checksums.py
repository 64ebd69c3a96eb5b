"""File checksums recorded wherever matlake stores a file's identity (releases, feature parts, model weights)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_and_size(path: Path) -> tuple[str, int]:
    """sha256 hex digest and size in bytes of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def sha256_file(path: Path) -> str:
    return sha256_and_size(path)[0]
