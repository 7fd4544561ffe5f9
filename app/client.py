"""The dashboard's only HTTP client to the prediction API.

Every call reads :class:`app.settings.Settings` (so ``API_URL`` can change between runs),
parses the answer with the API's own response models, and turns every failure into an
:class:`ApiError` whose message a stakeholder can read: ``ApiUnavailable`` when nothing
answered, ``ApiError`` with the status and the API's ``detail`` otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from api.job_schemas import JobDetail, JobList
from api.responses import (
    EvaluationResponse,
    HealthResponse,
    ModelInfo,
    PlacesResponse,
    PredictionResponse,
    ReadyResponse,
    ScoreResponse,
)
from app.settings import Settings

log = logging.getLogger(__name__)

Model = TypeVar("Model", bound=BaseModel)
STATUS_TIMEOUT = 5.0  # a status probe must not hold a page for the full request timeout


class ApiError(RuntimeError):
    """The API answered with an error, or with something the dashboard cannot read."""

    def __init__(self, message: str, *, url: str, status: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.status = status
        self.detail = detail


class ApiUnavailable(ApiError):
    """Nothing answered at the API's address (refused, unreachable or timed out)."""


def api_url() -> str:
    """The API base URL the dashboard talks to."""
    return Settings().base_url


def _detail_text(body: Any) -> str:
    """The API's error ``detail`` as one readable line (validation lists included)."""
    if not isinstance(body, Mapping):
        return str(body)
    detail = body.get("detail")
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, Mapping):
                loc = [str(p) for p in item.get("loc", []) if p not in ("body", "query")]
                field = ".".join(loc)
                parts.append(f"{field}: {item.get('msg')}" if field else str(item.get("msg")))
            else:
                parts.append(str(item))
        text = "; ".join(parts)
    else:
        text = str(detail) if detail is not None else ""
    # Bad files name where the problem is; the message usually says it already.
    where = []
    if body.get("file") and str(body["file"]) not in text:
        where.append(f"file {body['file']}")
    if body.get("column") and f"column {body['column']}" not in text:
        where.append(f"column {body['column']}")
    if body.get("rows") and "line" not in text:
        where.append("line " + ", ".join(str(r) for r in body["rows"][:5]))
    return f"{text} ({', '.join(where)})" if where else text


def _error_from(response: httpx.Response) -> ApiError:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:300]
    detail = _detail_text(body)
    message = f"{response.status_code} {response.reason_phrase}" + (f": {detail}" if detail else "")
    return ApiError(message, url=str(response.request.url), status=response.status_code, detail=body)


def _send(method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> httpx.Response:
    """One request to the API; raises ``ApiUnavailable`` or ``ApiError``."""
    settings = Settings()
    url = path if path.startswith(("http://", "https://")) else settings.base_url + path
    wait = timeout if timeout is not None else settings.request_timeout
    try:
        response = httpx.request(method, url, timeout=wait, **kwargs)
    except httpx.TimeoutException as exc:
        raise ApiUnavailable(f"no answer from {url} within {wait:g} s", url=url) from exc
    except (httpx.TransportError, httpx.InvalidURL) as exc:
        raise ApiUnavailable(f"cannot reach {url} ({exc})", url=url) from exc
    if response.is_error:
        error = _error_from(response)
        log.info("%s %s -> %s", method, url, error.message)
        raise error
    return response


def _parse(response: httpx.Response, model: type[Model]) -> Model:
    try:
        return model.model_validate(response.json())
    except (ValueError, ValidationError) as exc:
        url = str(response.request.url)
        raise ApiError(f"unexpected answer from {url}: {exc}", url=url, status=response.status_code) from exc


def health() -> HealthResponse:
    """``GET /health``: the API process is up."""
    return _parse(_send("GET", "/health", timeout=STATUS_TIMEOUT), HealthResponse)


def ready() -> ReadyResponse:
    """``GET /ready``: a model is loaded (``ApiError`` with status 503 when not)."""
    return _parse(_send("GET", "/ready", timeout=STATUS_TIMEOUT), ReadyResponse)


def model_info() -> ModelInfo:
    """``GET /model``: identity, metrics, training data and the record schema."""
    return _parse(_send("GET", "/model"), ModelInfo)


def evaluation() -> EvaluationResponse:
    """``GET /model/evaluation``: the test-year evaluation of the served model."""
    return _parse(_send("GET", "/model/evaluation"), EvaluationResponse)


def places(query: str = "", limit: int = 20) -> PlacesResponse:
    """``GET /places``: communes by name or code, most training accidents first."""
    return _parse(_send("GET", "/places", params={"q": query, "limit": limit}), PlacesResponse)


def predict(record: Mapping[str, Any], explain: bool = True, top: int = 10) -> PredictionResponse:
    """``POST /predict``: the probability for one accident record, with its top factors."""
    params: dict[str, Any] = {"explain": str(explain).lower()}
    if explain:
        params["top"] = top
    return _parse(_send("POST", "/predict", params=params, json=dict(record)), PredictionResponse)


def score_file(name: str, content: bytes, page_size: int = 100) -> ScoreResponse:
    """``POST /score/file``: score a CSV of records or a zip of a year's raw BAAC tables."""
    response = _send(
        "POST",
        "/score/file",
        params={"page_size": page_size},
        files={"file": (name, content, "application/octet-stream")},
        timeout=Settings().score_timeout,
    )
    return _parse(response, ScoreResponse)


def score_jobs(limit: int = 50, page_token: str | None = None) -> JobList:
    """``GET /score/jobs``: scoring runs (CLI, DVC stage, API uploads), newest first, one page."""
    params: dict[str, Any] = {"limit": limit}
    if page_token:
        params["page_token"] = page_token
    return _parse(_send("GET", "/score/jobs", params=params), JobList)


def score_job(job_id: str) -> JobDetail:
    """``GET /score/jobs/{id}``: one scoring run with its drift table and download links."""
    return _parse(_send("GET", f"/score/jobs/{quote(job_id, safe='')}"), JobDetail)


def download(url: str) -> bytes:
    """The bytes at a download URL of the API (absolute, or a path such as ``/score/jobs/x/scored.csv``)."""
    return _send("GET", url, timeout=Settings().score_timeout).content
