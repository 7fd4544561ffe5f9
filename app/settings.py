"""Deployment settings of the dashboard, from the environment (and ``.env`` when present)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the API is, where the dashboard listens, and how long to wait for answers."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    api_url: str = Field("http://127.0.0.1:8000", alias="API_URL", description="Base URL of the prediction API.")
    port: int = Field(8501, alias="APP_PORT", ge=1, le=65535, description="Port the dashboard listens on.")
    request_timeout: float = Field(
        30.0, alias="APP_REQUEST_TIMEOUT", gt=0, description="Seconds to wait for an API answer."
    )
    score_timeout: float = Field(
        300.0,
        alias="APP_SCORE_TIMEOUT",
        gt=0,
        description="Seconds to wait for a file to be scored (a whole year of accidents takes a while).",
    )

    @property
    def base_url(self) -> str:
        """``api_url`` without a trailing slash."""
        return self.api_url.rstrip("/")
