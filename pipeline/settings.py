"""Deployment settings of the pipeline (MLflow location, registry names), from the environment."""

from __future__ import annotations

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
