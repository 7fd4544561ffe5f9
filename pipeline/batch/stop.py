"""Ctrl-C and SIGTERM (docker stop, Kubernetes) stop a run at the next safe point.

The signal handler only records the request; the run raises ``Stopped`` where it checks
(``check_stop``: between blocks and chunks, and while it waits for the model). An exception
raised by the handler itself could land anywhere, e.g. inside the import machinery while
another thread imports, and leave a lock held that the interpreter's exit would wait on.

A server stops one run, not the process: ``stop_when(event)`` makes ``check_stop`` raise
``Cancelled`` in that run's thread (a context variable) once the event is set, e.g. when the
client that alone waits for the run goes away.
"""

from __future__ import annotations

import contextlib
import contextvars
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")
POLL_S = 0.1  # how often a wait looks for a stop request

_requested: list[int] = []  # the signal asked to stop with, if any
_lock = threading.Lock()
_cancel: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("stop_event", default=None)


class Stopped(BaseException):
    """A stop was requested by ``signum``; a BaseException, so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


class Cancelled(BaseException):
    """The run's ``stop_when`` event was set; a BaseException for the same reason as ``Stopped``."""


def check_stop() -> None:
    """Raise ``Stopped`` if a stop was requested, ``Cancelled`` if this run's event is set."""
    if _requested:
        raise Stopped(_requested[0])
    event = _cancel.get()
    if event is not None and event.is_set():
        raise Cancelled("the run was cancelled")


@contextlib.contextmanager
def stop_when(event: threading.Event) -> Iterator[None]:
    """While inside (in this thread's context), ``check_stop`` raises ``Cancelled`` once ``event`` is set."""
    token = _cancel.set(event)
    try:
        yield
    finally:
        _cancel.reset(token)


def wait_for(future: Future[T]) -> T:
    """The future's result, or ``Stopped`` as soon as a stop is requested."""
    while True:
        check_stop()
        with contextlib.suppress(TimeoutError):
            return future.result(timeout=POLL_S)


def request_stop(signum: int, frame: object = None) -> None:
    """Signal handler: record the request (the first signal counts)."""
    with _lock:
        if not _requested:
            _requested.append(signum)


@contextlib.contextmanager
def stop_on_signals(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """While inside, ``signums`` request a stop instead of interrupting wherever the code is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, request_stop) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        with _lock:
            _requested.clear()
