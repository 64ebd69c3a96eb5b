"""The toy CSV source for scheduler and notebook tests, importable by a scheduler's worker process.

Jobs name it with ``module = "tests.matlake.scheduler_toy"``. Environment variables shape it per process:
``TOY_SLOW_S`` (seconds per record), ``TOY_PROGRESS`` (a file that gets one line per normalised record, so a test
knows batches have committed), and an energy written ``boom`` raises an unexpected error (a failed run).
"""

from __future__ import annotations

import os

from tests.ingest import toy_source
from tests.ingest.toy_source import dataset, info, read, write  # noqa: F401  (the source contract)

toy_source.SLOW_S = float(os.environ.get("TOY_SLOW_S", "0") or 0)
_PROGRESS = os.environ.get("TOY_PROGRESS")


def normalise(raw):
    if raw.payload.get("energy") == "boom":
        raise RuntimeError(f"record {raw.key} blew up")
    record = toy_source.normalise(raw)
    if _PROGRESS:
        with open(_PROGRESS, "a") as fh:
            fh.write(f"{raw.key}\n")
    return record
