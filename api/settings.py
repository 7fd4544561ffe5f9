"""Deployment settings of the API, from the environment (and ``.env`` when present).

Every setting is read from the environment variable named in its alias, e.g. ``API_PORT``.
``API_KEY`` guards the admin endpoints: while it is unset they answer 503, so a server
started without a key can never be reloaded remotely.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MEGABYTE = 1024 * 1024


class Settings(BaseSettings):
    """Where the model comes from, how the server listens, and the input limits."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    mlflow_tracking_uri: str = Field("sqlite:///mlflow.db", alias="MLFLOW_TRACKING_URI")
    model_name: str = Field("accident-severity", alias="MODEL_NAME")
    model_alias: str = Field("champion", alias="MODEL_ALIAS")
    api_key: SecretStr | None = Field(None, alias="API_KEY")
    host: str = Field("127.0.0.1", alias="API_HOST")
    port: int = Field(8000, alias="API_PORT", ge=1, le=65535)
    max_batch: int = Field(1000, alias="API_MAX_BATCH", ge=1)
    max_upload_mb: float = Field(50, alias="API_MAX_UPLOAD_MB", gt=0)
    cors_origins: Annotated[list[str], NoDecode] = Field(
        ["http://127.0.0.1:8501", "http://localhost:8501"], alias="API_CORS_ORIGINS"
    )

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        """Accept a JSON list (as in ``.env.example``) or a comma-separated string."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]

    @property
    def model_uri(self) -> str:
        """The registry URI the API serves."""
        return f"models:/{self.model_name}@{self.model_alias}"

    @property
    def max_upload_bytes(self) -> int:
        """Largest accepted request body, in bytes."""
        return int(self.max_upload_mb * MEGABYTE)
