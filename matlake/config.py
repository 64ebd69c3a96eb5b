"""One place for configuration: database URL, feature-store root, models folder, Dask scheduler.

Values come from (highest first) environment variables ``MATLAKE_*``, a TOML file (``MATLAKE_CONFIG`` or
``./matlake.toml``), then defaults that make ``matlake demo`` work on a fresh machine with no configuration.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource


def _toml_path() -> Path:
    return Path(os.environ.get("MATLAKE_CONFIG", "matlake.toml"))


class Settings(BaseSettings):
    """Where matlake keeps its data and which services it talks to."""

    model_config = SettingsConfigDict(env_prefix="MATLAKE_", extra="ignore")

    data_dir: Path = Field(default=Path("matlake-data"), description="Root for the embedded database, features, models.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default: DuckDB file in data_dir.")
    feature_store: Path | None = Field(default=None, description="Parquet feature-store root; default data_dir/features.")
    models_dir: Path | None = Field(default=None, description="Model weights folder; default data_dir/models.")
    cache_dir: Path | None = Field(default=None, description="Download cache; default data_dir/downloads.")
    dask_scheduler: str | None = Field(default=None, description="Address of an existing Dask scheduler; none = local.")
    dask_workers: int = Field(default=2, description="Workers of the LocalCluster started when no scheduler is given.")
    lock_timeout_s: float = Field(default=30.0, description="How long a writer waits for the database lock.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_toml_path())
        return (init_settings, env_settings, toml)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"duckdb:///{(self.data_dir / 'matlake.duckdb').resolve()}"

    @property
    def resolved_feature_store(self) -> Path:
        return (self.feature_store or self.data_dir / "features").resolve()

    @property
    def resolved_models_dir(self) -> Path:
        return (self.models_dir or self.data_dir / "models").resolve()

    @property
    def resolved_cache_dir(self) -> Path:
        return (self.cache_dir or self.data_dir / "downloads").resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once); tests call ``get_settings.cache_clear()`` after changing the env."""
    return Settings()
