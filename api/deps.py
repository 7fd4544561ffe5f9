"""The served model (swappable at runtime) and the request dependencies that reach it."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader
from mlflow.exceptions import MlflowException

from api.evaluation import Evaluation, load_evaluation
from api.jobs import JobStore
from api.schemas import ModelIdentity
from api.settings import Settings
from api.telemetry import Telemetry
from pipeline.model import LoadedModel, ModelLoadError, load_model

log = logging.getLogger(__name__)


def one_line(exc: BaseException, limit: int = 500) -> str:
    """The first line of an error, for clients: XGBoost appends a native stack trace."""
    text = exc.message if isinstance(exc, MlflowException) else str(exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first if len(first) <= limit else first[: limit - 3] + "..."


@dataclass(frozen=True)
class Serving:
    """A loaded model with what was read alongside it."""

    model: LoadedModel
    evaluation: Evaluation | None
    loaded_at: float
    identity: ModelIdentity


class ModelHolder:
    """Holds the current model; ``load`` swaps it atomically, or keeps the old one on failure.

    Readers take ``current`` without locking: replacing one attribute is atomic, and a
    request keeps the ``Serving`` it read even if a reload lands meanwhile.
    """

    def __init__(self, model_uri: str, tracking_uri: str) -> None:
        self.model_uri = model_uri
        self.tracking_uri = tracking_uri
        self.current: Serving | None = None
        self.error: str | None = "model not loaded yet"
        self._lock = threading.Lock()

    def load(self) -> Serving:
        """Load the model and its evaluation, then swap; raises ModelLoadError and leaves
        the current model in place on failure."""
        with self._lock:
            start = time.perf_counter()
            try:
                model = load_model(self.model_uri, self.tracking_uri)
            except (ModelLoadError, MlflowException, OSError) as exc:
                log.warning("cannot load %s: %s", self.model_uri, exc)
                self.error = one_line(exc)
                raise ModelLoadError(self.error) from exc
            evaluation = load_evaluation(model.run_id, self.tracking_uri)
            serving = Serving(model, evaluation, time.time(), ModelIdentity(**model.describe()))
            self.current, self.error = serving, None
            log.info(
                "serving %s v%s (run %s) loaded in %.2f s",
                model.name,
                model.version,
                model.run_id,
                time.perf_counter() - start,
            )
            return serving


# Dependencies are ``async def`` on purpose: FastAPI runs sync ones in the thread pool, and the
# thread hop costs more than the work they do.


async def get_holder(request: Request) -> ModelHolder:
    """The app's model holder."""
    holder: ModelHolder = request.app.state.holder
    return holder


async def get_serving(request: Request) -> Serving:
    """The current model, or 503 with the reason it is missing."""
    holder: ModelHolder = request.app.state.holder
    serving = holder.current
    if serving is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"no model loaded: {holder.error}")
    return serving


async def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


async def get_telemetry(request: Request) -> Telemetry:
    """The app's Prometheus metrics."""
    telemetry: Telemetry = request.app.state.telemetry
    return telemetry


async def get_jobs(request: Request) -> JobStore:
    """The app's store of file-scoring jobs."""
    jobs: JobStore = request.app.state.jobs
    return jobs


_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Admin key (the API_KEY setting).")


async def require_api_key(
    settings: Annotated[Settings, Depends(get_settings)],
    key: Annotated[str | None, Security(_api_key_header)],
) -> None:
    """Admin guard: 503 while API_KEY is unset, 401 for a missing or wrong key."""
    if settings.api_key is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="admin endpoints are disabled: API_KEY is not set"
        )
    expected = settings.api_key.get_secret_value().encode()
    if key is None or not secrets.compare_digest(key.encode(), expected):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong X-API-Key header",
            headers={"WWW-Authenticate": "APIKey"},
        )


ServingDep = Annotated[Serving, Depends(get_serving)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TelemetryDep = Annotated[Telemetry, Depends(get_telemetry)]
JobsDep = Annotated[JobStore, Depends(get_jobs)]
