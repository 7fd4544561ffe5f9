"""JSON request bodies read under limits, before FastAPI and pydantic build anything.

``BoundedJSONRoute`` (the ``route_class`` of the JSON routers) reads the body from the
stream with a cap (``API_MAX_JSON_MB``, 413 past it, counted as bytes arrive, not from
headers), refuses a body that holds more JSON objects and arrays than a full batch could
(``API_MAX_BATCH``: byte counts, no parsing), parses it strictly (no NaN, Infinity, numbers
out of float range, nor nesting past Python's recursion limit: 422 ``json_invalid``), and
refuses any top-level array longer than ``API_MAX_BATCH`` before pydantic validates one
record. FastAPI then reuses the parsed body.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

from fastapi import HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from api.settings import Settings
from pipeline.records import RECORD_COLUMNS

_UNSET: Any = object()


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def json_invalid(msg: str, pos: int = 0) -> RequestValidationError:
    """The error FastAPI gives for a body that is not JSON, with the reason in ``ctx``."""
    return RequestValidationError(
        [{"type": "json_invalid", "loc": ("body", pos), "msg": "JSON decode error", "input": {}, "ctx": {"error": msg}}]
    )


def parse_strict(body: bytes) -> Any:
    """Standard JSON only: raises ``RequestValidationError`` (422) for anything else."""
    try:
        return json.loads(body, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise json_invalid(exc.msg, exc.pos) from None
    except UnicodeDecodeError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="the body is not UTF-8 text") from None
    except ValueError as exc:  # the hooks above, integers of over 4300 digits
        raise json_invalid(str(exc)[:200]) from None
    except RecursionError:
        raise json_invalid("nested too deeply") from None


def too_long(loc: tuple[str | int, ...], n: int, limit: int) -> RequestValidationError:
    """The 422 of a batch over ``API_MAX_BATCH``."""
    return RequestValidationError(
        [
            {
                "type": "too_long",
                "loc": loc,
                "msg": f"List should have at most {limit} items (API_MAX_BATCH), not {n}",
                "input": None,
                "ctx": {"max_length": limit, "actual_length": n},
            }
        ]
    )


def check_counts(body: bytes, limit: int) -> None:
    """Refuse, without parsing, a body with more JSON containers or values than a full batch
    has: ``limit`` flat records of ``len(RECORD_COLUMNS)`` fields, their array and the wrapping
    object. Brackets and commas inside strings count too, which no valid record has. This
    bounds the parse time by the batch size, not by the byte cap (4 MB of ``1,1,1...`` takes
    a second to parse, and blocks the event loop meanwhile)."""
    containers = body.count(b"{") + body.count(b"[")
    values = body.count(b",") + 1
    max_values = limit * (len(RECORD_COLUMNS) + 1) + 1
    if containers > limit + 2 or values > max_values:
        raise RequestValidationError(
            [
                {
                    "type": "too_long",
                    "loc": ("body",),
                    "msg": f"The body holds {containers} JSON objects and arrays and about {values} values; "
                    f"a batch of at most {limit} records (API_MAX_BATCH) of {len(RECORD_COLUMNS)} fields "
                    f"holds at most {limit + 2} and {max_values}",
                    "input": None,
                    "ctx": {"max_length": limit, "containers": containers, "values": values},
                }
            ]
        )


def check_lengths(data: Any, limit: int) -> None:
    """Refuse a top-level array, or an array under a top-level key, longer than ``limit``."""
    if isinstance(data, list) and len(data) > limit:
        raise too_long(("body",), len(data), limit)
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, list) and len(value) > limit:
                raise too_long(("body", key), len(value), limit)


def is_json(content_type: str | None) -> bool:
    """Whether FastAPI would parse a body of this media type as JSON (or no type given)."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class BoundedJSONRequest(Request):
    """A request whose ``body()`` stops at the cap and whose ``json()`` is strict (both cached)."""

    _bounded_body: bytes | None = None
    _bounded_json: Any = _UNSET

    @property
    def settings(self) -> Settings:
        """The app's settings."""
        settings: Settings = self.app.state.settings
        return settings

    async def body(self) -> bytes:
        if self._bounded_body is None:
            limit = self.settings.max_json_bytes
            too_large = HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                detail=f"the JSON body is over {self.settings.max_json_mb:g} MB (API_MAX_JSON_MB): "
                "send fewer records per request",
            )
            declared = self.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise too_large
            chunks: list[bytes] = []
            size = 0
            async for chunk in self.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
            self._bounded_body = b"".join(chunks)
        return self._bounded_body

    async def json(self) -> Any:
        if self._bounded_json is _UNSET:
            self._bounded_json = parse_strict(await self.body())
        return self._bounded_json


class BoundedJSONRoute(APIRoute):
    """A route whose JSON body passes the checks above before FastAPI validates it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded_handler(request: Request) -> Response:
            bounded = BoundedJSONRequest(request.scope, request.receive)
            body = await bounded.body()
            if body and is_json(bounded.headers.get("content-type")):
                limit = bounded.settings.max_batch
                check_counts(body, limit)
                check_lengths(await bounded.json(), limit)
            return await handler(bounded)

        return bounded_handler
