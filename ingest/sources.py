"""Registry of source modules by name, so the CLI and the scheduler can find an ingester."""

from __future__ import annotations

import importlib
from types import ModuleType

from matlake.errors import InputError

SOURCE_MODULES: dict[str, str] = {
    "demo": "matlake.ingest.demo",
    "mp": "matlake.ingest.mp",
    "oqmd": "matlake.ingest.oqmd",
    "wbm": "matlake.ingest.wbm",
    "taata": "matlake.ingest.taata",
    "experimental": "matlake.ingest.experimental",
    "supercon": "matlake.ingest.supercon",
    "icsd": "matlake.ingest.icsd",
    "synthesis": "matlake.ingest.synthesis",
}


def get(name: str) -> ModuleType:
    """The ingester for ``name``; an unknown name is a user error listing the known ones."""
    try:
        module_path = SOURCE_MODULES[name]
    except KeyError:
        known = ", ".join(sorted(SOURCE_MODULES))
        raise InputError(f"unknown source {name!r}: known sources are {known}") from None
    return importlib.import_module(module_path)


def register(name: str, module_path: str) -> None:
    SOURCE_MODULES[name] = module_path
