"""Prometheus metrics of the service and the ASGI middleware that records them."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"
OTHER_METHOD = "other"
# Label values come from this set and from route templates only: a client sending junk
# methods or random paths cannot grow the metrics without bound.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
VERDICTS: tuple[str, ...] = ("ok", "watch", "alert", "insufficient", "none")  # "none": not recorded
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Telemetry:
    """One registry per app, so several apps (tests) never clash on metric names."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "api_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "api_request_duration_seconds",
            "Request latency by route template.",
            ["route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "api_predictions",
            "Predictions served, by predicted label.",
            ["label"],
            registry=self.registry,
        )
        self.model_reloads = Counter(
            "api_model_reloads",
            "Model reload attempts by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.last_run_verdict = Gauge(
            "api_last_scoring_run_verdict",
            "1 for the drift verdict of this process's last file-scoring job, 0 for the others.",
            ["verdict"],
            registry=self.registry,
        )
        self.last_run_rows = Gauge(
            "api_last_scoring_run_rows",
            "Rows of this process's last file-scoring job, read and scored.",
            ["kind"],
            registry=self.registry,
        )
        self.last_run_alert = Gauge(
            "api_last_scoring_run_alert",
            "1 when this process's last file-scoring job raised a drift alert.",
            registry=self.registry,
        )
        # Label lookups cost microseconds each (locks, tuple building); children never go away,
        # so each label set is looked up once.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._prediction_children: dict[str, Any] = {}

    def request_children(self, route: str, method: str, status: int) -> tuple[Any, Any]:
        """The request counter and the latency histogram of one route, method and status."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(route=route, method=method, status=str(status)),
                self.latency.labels(route=route),
            )
            self._request_children[key] = children
        return children

    def predicted(self, label: str) -> Any:
        """The prediction counter of one label."""
        child = self._prediction_children.get(label)
        if child is None:
            child = self._prediction_children[label] = self.predictions.labels(label=label)
        return child

    def count_predictions(self, severe: int, total: int) -> None:
        """Add a batch of predictions to the per-label counter."""
        if severe:
            self.predicted("severe").inc(severe)
        if total - severe:
            self.predicted("not severe").inc(total - severe)

    def scoring_run_finished(self, verdict: str | None, input_rows: int, scored: int) -> None:
        """Set the last-run gauges when a file-scoring job ends."""
        current = verdict if verdict in VERDICTS else "none"
        for name in VERDICTS:
            self.last_run_verdict.labels(verdict=name).set(1 if name == current else 0)
        self.last_run_alert.set(1 if current == "alert" else 0)
        self.last_run_rows.labels(kind="input").set(input_rows)
        self.last_run_rows.labels(kind="scored").set(scored)


class MetricsMiddleware:
    """Counts and times every HTTP request, labelled by route template (not raw path) and
    method (standard ones; anything else is ``other``); unmatched paths are ``unmatched``."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # An exception escaping here becomes ServerErrorMiddleware's 500: status stays 500.
            route = scope.get("route")
            template = getattr(route, "path", UNMATCHED)
            method = scope["method"] if scope["method"] in METHODS else OTHER_METHOD
            requests, latency = self.telemetry.request_children(template, method, status)
            requests.inc()
            latency.observe(time.perf_counter() - start)
