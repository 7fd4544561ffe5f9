"""Deployment settings of the API, from the environment (and ``.env`` when present).

Every setting is read from the environment variable named in its alias, e.g. ``API_PORT``.
``API_KEY`` guards the admin endpoints: while it is unset, or shorter than
``MIN_API_KEY_LENGTH`` characters, they answer 503 (a warning is logged at startup), so a
server started without a real key can never be reloaded remotely.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MEGABYTE = 1024 * 1024
MIN_API_KEY_LENGTH = 24


class Settings(BaseSettings):
    """Where the model comes from, how the server listens, and the input limits."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    mlflow_tracking_uri: str = Field("sqlite:///mlflow.db", alias="MLFLOW_TRACKING_URI")
    model_name: str = Field("accident-severity", alias="MODEL_NAME")
    model_alias: str = Field("champion", alias="MODEL_ALIAS")
    model_poll_seconds: float = Field(
        30, alias="API_MODEL_POLL_SECONDS", ge=0, description="How often to look where the alias points; 0 = never."
    )
    registry_timeout_seconds: float = Field(
        10,
        alias="API_REGISTRY_TIMEOUT_SECONDS",
        gt=0,
        description="Timeout of one HTTP call to the tracking server (MLflow's MLFLOW_HTTP_REQUEST_TIMEOUT).",
    )
    registry_retries: int = Field(
        1,
        alias="API_REGISTRY_RETRIES",
        ge=0,
        le=10,
        description="Retries of a failed HTTP call to the tracking server (MLFLOW_HTTP_REQUEST_MAX_RETRIES).",
    )
    model_load_deadline_seconds: float = Field(
        120, alias="API_MODEL_LOAD_DEADLINE_SECONDS", gt=0, description="Longest wait for one model load."
    )
    api_key: SecretStr | None = Field(None, alias="API_KEY")
    admin_max_failures: int = Field(
        5, alias="API_ADMIN_MAX_FAILURES", ge=1, description="Wrong keys a client may send per window."
    )
    admin_failure_window_seconds: float = Field(
        300, alias="API_ADMIN_FAILURE_WINDOW_SECONDS", gt=0, description="Window of the failed-key count, seconds."
    )
    host: str = Field("127.0.0.1", alias="API_HOST")
    port: int = Field(8000, alias="API_PORT", ge=1, le=65535)
    limit_concurrency: int = Field(
        200, alias="API_LIMIT_CONCURRENCY", ge=1, description="Connections + tasks before uvicorn answers 503."
    )
    timeout_keep_alive: int = Field(
        5, alias="API_TIMEOUT_KEEP_ALIVE", ge=1, description="Seconds an idle connection is kept open."
    )
    access_log: bool = Field(True, alias="API_ACCESS_LOG", description="Log one line per request (python -m api).")
    max_batch: int = Field(1000, alias="API_MAX_BATCH", ge=1)
    max_json_mb: float = Field(2, alias="API_MAX_JSON_MB", gt=0, description="Largest JSON request body, MB.")
    max_errors: int = Field(
        50, alias="API_MAX_ERRORS", ge=1, description="Validation errors listed in one 422 response."
    )
    max_upload_mb: float = Field(50, alias="API_MAX_UPLOAD_MB", gt=0, description="Largest upload body, MB.")
    max_expanded_mb: float = Field(
        1000,
        alias="API_MAX_EXPANDED_MB",
        gt=0,
        description="CSV bytes one upload may expand to once unzipped and gunzipped (all members), MB.",
    )
    max_upload_rows: int = Field(
        1_000_000, alias="API_MAX_UPLOAD_ROWS", ge=1, description="Data rows of one uploaded file (two years)."
    )
    max_concurrent_jobs: int = Field(
        2,
        alias="API_MAX_CONCURRENT_JOBS",
        ge=1,
        description="File-scoring jobs at once, uploads being received included (each job runs in a worker "
        "process of its own); more get 429.",
    )
    job_cache_dir: Path | None = Field(
        None, alias="API_JOB_CACHE_DIR", description="Folder of the local copies of job files (default: temp)."
    )
    job_cache_max_age_seconds: float = Field(
        3600, alias="API_JOB_CACHE_MAX_AGE_SECONDS", gt=0, description="Local job files unused this long are dropped."
    )
    job_cache_max_mb: float = Field(
        2048, alias="API_JOB_CACHE_MAX_MB", gt=0, description="Disk budget of the local job files, MB."
    )
    mlflow_artifacts_dir: str = Field(
        "mlartifacts",
        alias="MLFLOW_ARTIFACTS_DIR",
        description="Artifacts of an embedded (SQLite) store, relative to the database's folder.",
    )
    monitor_experiment: str = Field("accident-severity-scoring", alias="MONITOR_EXPERIMENT")
    monitor_record: bool = Field(True, alias="MONITOR_RECORD", description="Record file-scoring jobs in MLflow.")
    monitor_psi_watch: float = Field(0.1, alias="MONITOR_PSI_WATCH", gt=0)
    monitor_psi_alert: float = Field(0.2, alias="MONITOR_PSI_ALERT", gt=0)
    monitor_min_rows: int = Field(100, alias="MONITOR_MIN_ROWS", ge=1)
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

    @property
    def max_expanded_bytes(self) -> int:
        """Largest expanded size of an upload, in bytes."""
        return int(self.max_expanded_mb * MEGABYTE)

    @property
    def job_cache_max_bytes(self) -> int:
        """Disk budget of the local job files, in bytes."""
        return int(self.job_cache_max_mb * MEGABYTE)

    @property
    def max_json_bytes(self) -> int:
        """Largest accepted JSON request body, in bytes."""
        return int(self.max_json_mb * MEGABYTE)

    @property
    def admin_disabled_reason(self) -> str | None:
        """Why the admin endpoints are off (no key, or a key too short to resist guessing), or None."""
        if self.api_key is None:
            return "API_KEY is not set"
        if len(self.api_key.get_secret_value()) < MIN_API_KEY_LENGTH:
            return f"API_KEY is shorter than {MIN_API_KEY_LENGTH} characters"
        return None
