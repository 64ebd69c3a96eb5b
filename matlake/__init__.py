"""matlake: a materials-data lakehouse (ingest -> tables -> features -> models -> predictions)."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``matlake.connect`` is imported on first use, so ``import matlake`` stays light for the CLI."""
    if name == "connect":
        from .notebook import connect

        return connect
    raise AttributeError(f"module 'matlake' has no attribute {name!r}")
