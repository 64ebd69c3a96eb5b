"""matlake: a materials-data lakehouse (ingest -> tables -> features -> models -> predictions)."""

__version__ = "0.1.0"
