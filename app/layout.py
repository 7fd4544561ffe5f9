"""The frame every page shares: the sidebar with the API status, plain errors, cached API reads.

``GET /model`` and ``GET /model/evaluation`` are cached for a minute per API URL and per
loaded model (``loaded_at``), so a reload of the champion shows up at once. The status probe
(``GET /ready``) is cached for a few seconds only, failures included, so that a down API
costs one probe per page view, not one per widget.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NoReturn

import streamlit as st

from api.responses import EvaluationResponse, ModelInfo, ReadyResponse
from app import client
from app.client import ApiError, ApiUnavailable
from app.formatting import timestamp

log = logging.getLogger(__name__)

STATUS_TTL = 5
MODEL_TTL = 60
START_HINT = (
    "Start it with `make api` (the API only) or `make run` (API and dashboard), or set `API_URL` to where it runs."
)


@dataclass(frozen=True)
class ApiStatus:
    """What ``GET /ready`` said, or why it could not be asked."""

    url: str
    ready: ReadyResponse | None = None
    error: str | None = None
    reachable: bool = True


@st.cache_data(ttl=STATUS_TTL, show_spinner=False)
def _probe(url: str) -> ApiStatus:
    # ``url`` keys the cache: the client reads the same URL from the settings.
    try:
        return ApiStatus(url, ready=client.ready())
    except ApiUnavailable as exc:
        return ApiStatus(url, error=exc.message, reachable=False)
    except ApiError as exc:
        return ApiStatus(url, error=exc.message)


def api_status() -> ApiStatus:
    """The API's readiness (cached a few seconds)."""
    return _probe(client.api_url())


def sidebar(status: ApiStatus) -> None:
    """API status and model version under the page list."""
    with st.sidebar:
        if status.ready is not None:
            model = status.ready.model
            st.success(
                f"**API ready**  \n{model.name} · v{model.version} · @{model.alias}", icon=":material/check_circle:"
            )
            st.caption(f"Model loaded {timestamp(status.ready.loaded_at)}")
        elif status.reachable:
            st.warning("**API up, no model loaded**", icon=":material/hourglass_empty:")
        else:
            st.error("**API unreachable**", icon=":material/cloud_off:")
        st.caption(f"API: `{status.url}`")
        st.caption("Data: BAAC road accident files, ONISR / data.gouv.fr (Licence Ouverte 2.0).")


def unavailable_message(url: str, reason: str) -> str:
    """The plain words shown when the API cannot be reached."""
    return f"**The prediction API is not reachable** at `{url}` ({reason}).\n\n{START_HINT}"


def require_ready(status: ApiStatus) -> ReadyResponse:
    """The ready status, or a plain error on the page and the end of this run."""
    if status.ready is not None:
        return status.ready
    if not status.reachable:
        st.error(unavailable_message(status.url, status.error or "no answer"), icon=":material/cloud_off:")
    else:
        st.error(
            f"**The prediction API at `{status.url}` is up but has no model to serve**: {status.error}\n\n"
            "Train and register one with `make repro`, then restart the API (`make api`) or reload it "
            "(`POST /admin/reload`).",
            icon=":material/hourglass_empty:",
        )
    st.stop()


def show_api_error(exc: ApiError, action: str) -> None:
    """An API failure as one readable message on the page."""
    log.warning("%s failed: %s", action, exc.message)
    if isinstance(exc, ApiUnavailable):
        st.error(unavailable_message(client.api_url(), exc.message), icon=":material/cloud_off:")
    else:
        st.error(f"**{action} failed.** The API answered {exc.message}", icon=":material/error:")


def stop_on_error(exc: ApiError, action: str) -> NoReturn:
    """Show the failure and end this run."""
    show_api_error(exc, action)
    st.stop()


# ``url`` and ``loaded_at`` only key the caches: another API, or a reloaded model, is fetched anew.
@st.cache_data(ttl=MODEL_TTL, show_spinner="Loading the model card…")
def _model_info(url: str, loaded_at: float) -> ModelInfo:
    return client.model_info()


@st.cache_data(ttl=MODEL_TTL, show_spinner="Loading the test-year evaluation…")
def _evaluation(url: str, loaded_at: float) -> EvaluationResponse:
    return client.evaluation()


def model_info(ready: ReadyResponse) -> ModelInfo:
    """``GET /model`` (cached), or a plain error and the end of this run."""
    try:
        return _model_info(client.api_url(), ready.loaded_at)
    except ApiError as exc:
        stop_on_error(exc, "Loading the model card")


def evaluation(ready: ReadyResponse) -> EvaluationResponse:
    """``GET /model/evaluation`` (cached), or a plain message and the end of this run."""
    try:
        return _evaluation(client.api_url(), ready.loaded_at)
    except ApiError as exc:
        if exc.status == 404:
            st.warning(
                f"**No test-year evaluation for this model.** {exc.message}\n\n"
                "Models registered by `make repro` log it with their MLflow run.",
                icon=":material/info:",
            )
            st.stop()
        stop_on_error(exc, "Loading the evaluation")
