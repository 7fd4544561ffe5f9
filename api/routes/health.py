"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from api.deps import HolderDep
from api.responses import HealthResponse, ReadyResponse
from api.schemas import ErrorResponse

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse, summary="Liveness")
async def health() -> HealthResponse:
    """The process is up (says nothing about the model, and never waits on the registry)."""
    return HealthResponse(status="ok")


@router.get(
    "/ready",
    response_model=ReadyResponse,
    summary="Readiness",
    responses={
        503: {
            "model": ErrorResponse,
            "description": "No model loaded yet (it loads in the background after startup); the reason is in `detail`.",
        }
    },
)
async def ready(holder: HolderDep) -> ReadyResponse:
    """200 once a model is loaded, with its identity; 503 with the reason before."""
    serving = holder.current
    if serving is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"no model loaded: {holder.error}")
    return ReadyResponse(status="ready", model=serving.identity, loaded_at=serving.loaded_at)
