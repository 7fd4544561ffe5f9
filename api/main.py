"""The FastAPI application: ``uvicorn api.main:app``.

The model loads in the background from the MLflow registry (``models:/MODEL_NAME@MODEL_ALIAS``):
``/health`` answers at once, ``/ready`` and the scoring routes answer 503 with the reason until
the model is in, and the alias is followed every ``API_MODEL_POLL_SECONDS``
(``api.services.model_holder``). ``POST /admin/reload`` switches at once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from api.errors import validation_error_handler
from api.jobs import JobStore
from api.log_filters import install_accept_error_filter
from api.origin import OriginGuardMiddleware
from api.routes import admin, health, jobs, model, places, predict, score
from api.routes import metrics as metrics_route
from api.schemas import ErrorResponse
from api.services.admin_guard import AdminGuard
from api.services.job_runner import start_fork_server
from api.services.model_holder import ModelHolder, configure_mlflow
from api.settings import Settings
from api.telemetry import MetricsMiddleware, Telemetry
from pipeline.errors import InputError

# Spinning OpenMP threads would steal the core from the event loop (set before xgboost runs).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# MLflow draws progress bars on stderr for every artifact download; they clutter server logs.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

log = logging.getLogger(__name__)


DESCRIPTION = """
Predicts whether a French road accident is **severe** (at least one person killed or
hospitalised) from an accident record coded as in the ONISR codebook (BAAC open data).

* `POST /predict`: one record; `?explain=true` adds the top contributing factors.
* `POST /predict/batch`: up to `API_MAX_BATCH` records.
* `POST /score/file`: a CSV of accident records, or a zip of one year's four raw BAAC tables.
* `GET /model`, `GET /model/evaluation`: the served model, its record schema and test-year evaluation.
* `GET /places?q=lyon`: commune INSEE codes and coordinates by name.
* `POST /admin/reload` (header `X-API-Key`): reload the champion from the MLflow registry.
"""


async def input_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Bad input data -> 422 with the one-line message that names file, column and lines."""
    assert isinstance(exc, InputError)
    body = ErrorResponse(detail=str(exc), file=exc.file, column=exc.column, rows=exc.rows or None)
    return JSONResponse(body.model_dump(), status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Anything unforeseen: logged with its traceback here, never sent to the client."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error"}, status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start loading and following the model in the background (never blocks startup) and the
    job workers' fork server, and clean the job folder on shutdown."""
    install_accept_error_filter()
    start_fork_server()
    holder: ModelHolder = app.state.holder
    holder.start(app.state.settings.model_poll_seconds)
    try:
        yield
    finally:
        await holder.stop()
        app.state.jobs.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app from ``settings`` (read from the environment when omitted)."""
    settings = settings or Settings()
    if settings.api_key is None:
        log.info("API_KEY is not set: admin endpoints are disabled")
    elif settings.admin_disabled_reason is not None:
        log.warning("admin endpoints are disabled: %s", settings.admin_disabled_reason)
    configure_mlflow(settings)
    # /docs and /redoc load Swagger UI and ReDoc from the API itself (/static-offline-docs), not a CDN.
    app = FastAPIOffline(
        title="Accident severity API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        max_body_size=settings.max_upload_bytes,
        exception_handlers={
            InputError: input_error_handler,
            RequestValidationError: validation_error_handler,
            Exception: unexpected_error_handler,
        },
    )
    app.state.settings = settings
    app.state.telemetry = Telemetry()
    app.state.holder = ModelHolder.from_settings(settings, app.state.telemetry)
    app.state.admin_guard = AdminGuard(settings)
    app.state.jobs = JobStore.from_settings(settings)
    for router in (
        health.router,
        metrics_route.router,
        model.router,
        places.router,
        predict.router,
        score.router,
        jobs.router,
        admin.router,
    ):
        app.include_router(router)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", "X-API-Key"],
    )
    # Outside CORS: a cross-site POST is refused before any route reads its body.
    app.add_middleware(OriginGuardMiddleware, allowed_origins=settings.cors_origins)
    # Added last, so outermost among user middleware: it also times CORS preflights.
    app.add_middleware(MetricsMiddleware, telemetry=app.state.telemetry)
    return app


app = create_app()
