"""Deployment settings of the pipeline (MLflow location, registry names), from the environment."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PipelineSettings(BaseSettings):
    """Where runs and models go. Defaults are embedded: SQLite file + local artifact folder.

    A remote server (DagsHub or ``mlflow server``) is switched on by ``MLFLOW_TRACKING_URI``;
    MLflow itself reads ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    mlflow_tracking_uri: str = "sqlite:///mlflow.db"
    mlflow_experiment: str = "accident-severity"
    mlflow_artifacts_dir: str = "mlartifacts"
    model_name: str = "accident-severity"
    model_alias: str = "champion"
    candidate_alias: str = "candidate"
    # Scoring runs (pipeline.monitoring): where they go and when drift is worth a look or an alert.
    monitor_record: bool = Field(True, description="record every batch scoring as an MLflow run")
    monitor_experiment: str = "accident-severity-scoring"
    monitor_psi_watch: float = Field(0.1, gt=0)
    monitor_psi_alert: float = Field(0.2, gt=0)
    monitor_min_rows: int = Field(100, ge=1)
    monitor_log_timeout_seconds: float = Field(120, gt=0, description="longest wait for a run to be logged")
