"""The request dependencies: the app's services, reached through ``request.app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from api.jobs import JobStore
from api.services.admin_guard import AdminGuard
from api.services.model_holder import ModelHolder, Serving
from api.settings import Settings
from api.telemetry import Telemetry

__all__ = [
    "HolderDep",
    "JobsDep",
    "ModelHolder",
    "Serving",
    "ServingDep",
    "SettingsDep",
    "TelemetryDep",
    "require_api_key",
]

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


async def require_api_key(request: Request, key: Annotated[str | None, Security(_api_key_header)]) -> None:
    """Admin guard: 503 while admin is disabled, 429 after too many wrong keys, 401 for a wrong one."""
    guard: AdminGuard = request.app.state.admin_guard
    guard.check(request.client.host if request.client else "unknown", key)


ServingDep = Annotated[Serving, Depends(get_serving)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TelemetryDep = Annotated[Telemetry, Depends(get_telemetry)]
JobsDep = Annotated[JobStore, Depends(get_jobs)]
