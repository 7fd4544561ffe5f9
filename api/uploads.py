"""Uploads under the server's own troubles: a full disk, a client that leaves, too many jobs.

``UploadRoute`` (the ``route_class`` of the file-scoring router) reads the multipart body
itself before FastAPI does (FastAPI then reuses the parsed form), so that:

* a job slot is taken first and held until the answer: while ``API_MAX_CONCURRENT_JOBS``
  uploads are received or scored, a further one is read and dropped (never spooled), then 429;
* an ``OSError`` while the upload is spooled to a temporary file (a full ``TMPDIR``, a quota, a
  file-size limit) is a 507 naming the problem, not FastAPI's "error parsing the body";
* a client that disconnects in the middle of its upload is dropped quietly (the spooled parts
  are closed, hence deleted, by the form parser);
* the event loop stays free for other requests while a large body arrives: the parser is fed
  ``COALESCE_BYTES`` at a time (``CoalescedRequest``) instead of each 64 KiB the server reads,
  so the spooled file is written in one worker-thread hop per MiB, not one per network chunk.

``disconnect_event`` gives the event that a job of the request's waits on to stop early.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response, status
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect

log = logging.getLogger(__name__)

RETRY_AFTER_S = 10  # seconds a client refused for too many jobs waits before trying again
DISCONNECT_POLL_S = 0.25  # how often a running job looks whether its client is still there
CLIENT_CLOSED = 499  # nginx's "client closed request": logged and counted, never received
MAX_FILES = 1  # file parts in one upload (the route takes one file)
MAX_FIELDS = 8  # other form fields (the route reads none)
COALESCE_BYTES = 1 << 20  # body bytes handed to the form parser at once (its spool writes in a thread per call)


def too_many_jobs(max_running: int) -> HTTPException:
    """The 429 of a file-scoring request while every job slot is taken."""
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        detail=f"{max_running} file-scoring jobs are being received or run (API_MAX_CONCURRENT_JOBS): retry later",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def storage_error(exc: OSError) -> HTTPException:
    """The 507 of an upload the server could not store: what went wrong, and that it is the server's."""
    name = errno.errorcode.get(exc.errno or 0, "OSError")
    reason = exc.strerror or type(exc).__name__
    return HTTPException(
        status.HTTP_507_INSUFFICIENT_STORAGE,
        detail=f"the server could not store the upload in its temporary folder ({name}: {reason}); try again later",
    )


class CoalescedRequest(Request):
    """A request whose body stream comes in pieces of at least ``COALESCE_BYTES`` (the last one aside).

    Starlette's form parser writes each piece it is given to the spooled file in a worker
    thread; fed the server's 64 KiB reads, a 50 MB upload took 800 thread hops and most of the
    event loop's time (py-spy), delaying every other request.
    """

    async def stream(self) -> AsyncGenerator[bytes, None]:
        buffer = bytearray()
        async for chunk in super().stream():
            buffer += chunk
            if len(buffer) >= COALESCE_BYTES:
                yield bytes(buffer)
                buffer.clear()
        if buffer:
            yield bytes(buffer)
        yield b""


class UploadRoute(APIRoute):
    """A route whose multipart body is read under the rules above before FastAPI validates it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:  # pages and downloads: nothing uploaded
            return handler

        async def upload_handler(received: Request) -> Response:
            request = CoalescedRequest(received.scope, received.receive)
            jobs = request.app.state.jobs
            # The job slot covers the upload from its first byte: uploads received at once are
            # bounded too, not only jobs scoring (20 bodies parsed at once starved the event loop).
            if not jobs.try_start():
                # Read and drop the body: a client still sending when the connection closes
                # would see a reset, not the 429 telling it when to retry.
                try:
                    async for _ in received.stream():
                        pass
                except ClientDisconnect:
                    return Response(status_code=CLIENT_CLOSED)
                raise too_many_jobs(jobs.max_running)
            try:
                await request.form(max_files=MAX_FILES, max_fields=MAX_FIELDS)
                return await handler(request)
            except OSError as exc:
                log.warning("upload refused on %s: %s", request.url.path, exc)
                raise storage_error(exc) from exc
            except ClientDisconnect:
                log.info("client left during its upload to %s: upload dropped", request.url.path)
                return Response(status_code=CLIENT_CLOSED)
            finally:
                jobs.finish()

        return upload_handler


async def _watch(request: Request, event: asyncio.Event) -> None:
    """Set ``event`` once the client has disconnected."""
    while not event.is_set():
        if await request.is_disconnected():
            log.info("client left while its job on %s ran: cancelling it", request.url.path)
            event.set()
            return
        await asyncio.sleep(DISCONNECT_POLL_S)


@contextlib.asynccontextmanager
async def disconnect_event(request: Request) -> AsyncIterator[asyncio.Event]:
    """An event set once the client that alone waits for the answer has left (looked at every
    ``DISCONNECT_POLL_S``); set on exit too, so that whatever waits on it stops."""
    event = asyncio.Event()
    watcher = asyncio.ensure_future(_watch(request, event))
    try:
        yield event
    finally:
        event.set()
        watcher.cancel()
