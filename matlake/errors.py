"""Errors a user can cause. The CLI prints their message on one line and exits non-zero, never a traceback."""

from __future__ import annotations


class MatlakeError(Exception):
    """Base class for errors with a message meant for the user."""

    exit_code = 1


class ConfigError(MatlakeError):
    """A setting or path is unusable."""


class DatabaseError(MatlakeError):
    """The database cannot be opened or used as asked."""


class DatabaseLockedError(DatabaseError):
    """Another process holds the DuckDB file."""

    exit_code = 3


class SchemaVersionError(DatabaseError):
    """The database schema is older or newer than this code."""


class InputError(MatlakeError):
    """An input file or argument is unusable as a whole (single bad records become rejects instead)."""
