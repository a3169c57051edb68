"""Storage settings, read once from the environment or `.env`."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .database import default_database_url, normalize_url


class StorageSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLIPCHAT_", env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("DATABASE_URL", "CLIPCHAT_DATABASE_URL"),
        description="The database, as an SQLAlchemy URL; default: SQLite in the user data directory. For "
        "production, PostgreSQL: postgresql://user:password@host/db works as pasted.",
    )
    database_timeout_s: float = Field(
        5,
        gt=0,
        le=300,
        description="Longest any one wait for the database may take "
        "(connecting, a pooled connection, a lock); a write retries "
        "for at most 20 s in all, then the user hears 'try again'.",
    )
    # At least a day: 0 or less would delete every turn and photo record at the next purge.
    retention_days: int = Field(
        90, ge=1, le=36500, description="Turns and photo records older than this many days are purged, once a day."
    )

    def url(self) -> str:
        return normalize_url(self.database_url) if self.database_url else default_database_url()
