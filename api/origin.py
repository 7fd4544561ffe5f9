"""Cross-site request refusal for state-changing methods (CSRF), next to CORS.

CORS only stops a page on another site from *reading* answers; a "simple" cross-site POST
(a form, a file upload) still reaches the server and costs a scoring job. So a POST (PUT,
PATCH, DELETE) is refused with 403 when the browser says it comes from another site: an
``Origin`` that is neither the API's own host nor in ``API_CORS_ORIGINS``, or, without
``Origin``, ``Sec-Fetch-Site: cross-site``. Clients that are not browsers (curl, httpx, the
dashboard's server side) send neither header and pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def origin_allowed(origin: str, host: str | None, allowed: frozenset[str]) -> bool:
    """Whether ``origin`` is the API's own (same host and port as ``Host``) or listed."""
    if origin in allowed or "*" in allowed:
        return True
    return host is not None and origin != "null" and urlsplit(origin).netloc.lower() == host.lower()


class OriginGuardMiddleware:
    """403 for state-changing requests a browser sends from a site not allowed."""

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(o.rstrip("/") for o in allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in UNSAFE_METHODS:
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            fetch_site = headers.get("sec-fetch-site")
            refused = (
                not origin_allowed(origin, headers.get("host"), self.allowed)
                if origin is not None
                else fetch_site == "cross-site"
            )
            if refused:
                await self._refuse(origin or f"Sec-Fetch-Site: {fetch_site}", send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(origin: str, send: Send) -> None:
        detail = f"cross-origin request refused: {origin[:200]} is not in API_CORS_ORIGINS"
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
