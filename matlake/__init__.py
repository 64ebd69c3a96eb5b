"""matlake: a materials-data lakehouse (ingest -> tables -> features -> models -> predictions)."""

import os

__version__ = "0.1.0"

# OpenMP threads that spin while waiting at a barrier steal the core from the thread doing the work whenever the
# machine is busier than torch's thread count (Dask workers beside a notebook, a scheduled ingest, CI): Roost
# training with 2 threads on a loaded 2-core machine ran 5-10x slower than with 1 thread. Sleeping waiters avoid
# that (bench/bench_roost_vs_aviary.py). Read once when OpenMP starts, so it is set before torch is imported; a
# value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def __getattr__(name: str):
    """``matlake.connect`` is imported on first use, so ``import matlake`` stays light for the CLI."""
    if name == "connect":
        from .notebook import connect

        return connect
    raise AttributeError(f"module 'matlake' has no attribute {name!r}")
