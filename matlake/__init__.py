"""matlake: a materials-data lakehouse (ingest -> tables -> features -> models -> predictions)."""

import os

__version__ = "0.1.0"

# torch's OpenMP (GNU libgomp in the Linux CPU wheels) lets a thread that waits at a barrier spin for 300,000
# iterations before it sleeps. When the machine is busier than torch's thread count (Dask workers beside a notebook,
# a scheduled ingest, CI) the spinning waiter steals the core from the thread doing the work: Roost training with 2
# threads on a 2-core machine ran at 789 samples/s beside 2 busy processes and 290 beside 4, against 2,889 when
# idle. A spin of 10,000 costs nothing idle (2,895) and gives 1,086 and 453; sleeping at once (OMP_WAIT_POLICY=
# PASSIVE) gives 1,592 and 496 but only 1,577 idle. libgomp reads this once when it starts, so it is set before
# torch is imported; a value the user set (or an OMP_WAIT_POLICY) wins.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")


def __getattr__(name: str):
    """``matlake.connect`` is imported on first use, so ``import matlake`` stays light for the CLI."""
    if name == "connect":
        from .notebook import connect

        return connect
    raise AttributeError(f"module 'matlake' has no attribute {name!r}")
