"""Prometheus scrape endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import TelemetryDep

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format."}
    },
)
async def metrics(telemetry: TelemetryDep) -> Response:
    """Requests by route template, method and status; latency histogram by route;
    predictions by label; model reloads by outcome."""
    return Response(generate_latest(telemetry.registry), media_type=CONTENT_TYPE_LATEST)
