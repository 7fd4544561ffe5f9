"""Validation errors as bounded, always-serialisable JSON.

FastAPI's default 422 echoes each error's ``input`` and ``ctx`` as they are: a 10 MB string
comes back whole, a lone surrogate or a NaN cannot be encoded (a 500), and thousands of bad
records give thousands of errors. Here every echoed value is clipped (``MAX_TEXT``
characters, ``MAX_ITEMS`` items, ``MAX_DEPTH`` levels), non-finite numbers and undecodable
text are spelled out, and at most ``API_MAX_ERRORS`` errors are listed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import islice
from typing import Any

from fastapi import Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

MAX_TEXT = 200
MAX_MSG = 2000
MAX_ITEMS = 10
MAX_DEPTH = 3
MAX_INT = 10**30


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """At most ``limit`` characters, lone surrogates written as ``\\udXXX`` (valid UTF-8)."""
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} characters)"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def bounded(value: Any, depth: int = 0) -> Any:
    """A JSON-safe, size-bounded copy of ``value`` for an error message."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -MAX_INT < value < MAX_INT else clip(str(value), 40)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return clip(value)
    if isinstance(value, (bytes, bytearray)):
        return clip(bytes(value[: MAX_TEXT * 4]).decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            return f"<object of {len(value)} keys>"
        out = {clip(str(k)): bounded(v, depth + 1) for k, v in islice(value.items(), MAX_ITEMS)}
        if len(value) > MAX_ITEMS:
            out["..."] = f"{len(value) - MAX_ITEMS} more keys"
        return out
    if isinstance(value, (list, tuple)):
        if depth >= MAX_DEPTH:
            return f"<array of {len(value)} items>"
        items = [bounded(v, depth + 1) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"... {len(value) - MAX_ITEMS} more items")
        return items
    return clip(str(value))  # exceptions in ctx, decimals...


def bounded_error(error: Mapping[str, Any]) -> dict[str, Any]:
    """One pydantic/FastAPI error with its ``loc``, ``msg``, ``input`` and ``ctx`` bounded."""
    out: dict[str, Any] = {
        "type": clip(str(error.get("type", "value_error")), 100),
        "loc": [part if isinstance(part, int) else clip(str(part), 100) for part in error.get("loc", ())[:20]],
        "msg": clip(str(error.get("msg", "")), MAX_MSG),
        "input": bounded(error.get("input")),
    }
    ctx = error.get("ctx")
    if ctx:
        out["ctx"] = bounded(ctx, MAX_DEPTH - 1)
    return out


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """422 with at most ``API_MAX_ERRORS`` bounded errors, the count of the others last."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    limit: int = request.app.state.settings.max_errors
    detail = [bounded_error(e) for e in islice(errors, limit)]
    if len(errors) > limit:
        detail.append(
            {
                "type": "too_many_errors",
                "loc": ["body"],
                "msg": f"{len(errors) - limit} more errors not listed (API_MAX_ERRORS={limit})",
            }
        )
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
