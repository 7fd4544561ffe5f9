"""Operations guarded by the API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status

from api.deps import HolderDep, TelemetryDep, require_api_key
from api.responses import ReloadResponse
from api.schemas import ErrorResponse
from pipeline.model import ModelLoadError

router = APIRouter(prefix="/admin", tags=["admin"])


@router.post(
    "/reload",
    response_model=ReloadResponse,
    summary="Reload the model from the registry",
    responses={
        401: {"model": ErrorResponse, "description": "Missing or wrong `X-API-Key`."},
        429: {
            "model": ErrorResponse,
            "description": "Too many wrong keys from this client (`API_ADMIN_MAX_FAILURES`); see `Retry-After`.",
        },
        503: {
            "model": ErrorResponse,
            "description": "API_KEY is unset or too short, or the model could not be loaded "
            "(the previous one keeps serving).",
        },
    },
)
async def reload_model(
    holder: HolderDep, telemetry: TelemetryDep, _: Annotated[None, Depends(require_api_key)]
) -> ReloadResponse:
    """Load what ``models:/MODEL_NAME@MODEL_ALIAS`` names now and swap it in atomically, without
    waiting for the next poll (``API_MODEL_POLL_SECONDS``). On failure the current model keeps serving."""
    previous = holder.current
    try:
        serving = await holder.load()
    except ModelLoadError as exc:
        telemetry.model_reloads.labels(outcome="failed").inc()
        still = f"; still serving version {previous.identity.version}" if previous else ""
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"reload failed: {exc}{still}") from exc
    telemetry.model_reloads.labels(outcome="reloaded").inc()
    return ReloadResponse(status="reloaded", previous=previous.identity if previous else None, model=serving.identity)
