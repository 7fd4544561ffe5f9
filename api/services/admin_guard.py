"""The admin key check, with a per-client limit on wrong keys (``API_ADMIN_MAX_FAILURES``
per ``API_ADMIN_FAILURE_WINDOW_SECONDS``).

A client over the limit gets 429 with ``Retry-After`` for every attempt, the right key
included, until its oldest failure leaves the window: guessing a 24-character key at 5 tries
per 5 minutes is hopeless. Clients are told apart by their address (behind a reverse proxy,
run uvicorn with ``--proxy-headers --forwarded-allow-ips`` so it is the real one).
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections import OrderedDict, deque

from fastapi import HTTPException, status

from api.settings import Settings

log = logging.getLogger(__name__)

MAX_TRACKED_CLIENTS = 10_000
"""Clients with recent failures kept in memory; the oldest is forgotten beyond (bounded RAM)."""


class AdminGuard:
    """Checks ``X-API-Key`` and counts each client's recent failures."""

    def __init__(self, settings: Settings) -> None:
        self.disabled_reason = settings.admin_disabled_reason
        self._expected = settings.api_key.get_secret_value().encode() if settings.api_key else b""
        self.max_failures = settings.admin_max_failures
        self.window = settings.admin_failure_window_seconds
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.get(client)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
        return failures

    def check(self, client: str, key: str | None, now: float | None = None) -> None:
        """Return if ``key`` is right; raise 503 (disabled), 429 (too many failures) or 401."""
        if self.disabled_reason is not None:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"admin endpoints are disabled: {self.disabled_reason}"
            )
        now = time.monotonic() if now is None else now
        failures = self._recent(client, now)
        if len(failures) >= self.max_failures:
            retry = max(1, math.ceil(failures[0] + self.window - now))
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                detail=f"too many wrong API keys from this client (API_ADMIN_MAX_FAILURES={self.max_failures} "
                f"per {self.window:g} s); retry in {retry} s",
                headers={"Retry-After": str(retry)},
            )
        if key is not None and secrets.compare_digest(key.encode(), self._expected):
            return
        failures.append(now)
        self._failures[client] = failures
        self._failures.move_to_end(client)
        while len(self._failures) > MAX_TRACKED_CLIENTS:
            self._failures.popitem(last=False)
        log.warning("wrong or missing admin key from %s (%d in the window)", client, len(failures))
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong X-API-Key header",
            headers={"WWW-Authenticate": "APIKey"},
        )
