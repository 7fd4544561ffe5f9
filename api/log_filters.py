"""Keep the log readable when the process runs out of file descriptors.

With every descriptor taken (e.g. a thousand idle connections past ``ulimit -n``), asyncio
logs ``socket.accept() out of system resource`` with a traceback each time it retries the
listening socket: up to one line per pending connection (its accept loop runs ``backlog``
times, 2048 with uvicorn) every second, and as many ``_start_serving`` retries that fail
once the server closes its socket. ``RepeatFilter`` lets one such line through per
``interval`` seconds and reports how many it held back (measured: 5 MB of log in 4 s of
exhaustion before, a few lines after; ``tests/e2e/test_api_e2e.py``).
"""

from __future__ import annotations

import logging
import time

ACCEPT_ERROR = "socket.accept() out of system resource"
ACCEPT_RETRY_ERROR = "Exception in callback BaseSelectorEventLoop._start_serving"


class RepeatFilter(logging.Filter):
    """Pass one record starting with ``prefix`` per ``interval`` seconds; others pass untouched."""

    def __init__(self, prefix: str, interval: float = 60.0) -> None:
        super().__init__()
        self.prefix = prefix
        self.interval = interval
        self.suppressed = 0
        self._last = -float("inf")

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        now = time.monotonic()
        if now - self._last < self.interval:
            self.suppressed += 1
            return False
        if self.suppressed:
            record.msg = f"{record.msg} ({self.suppressed} more in the last {self.interval:g} s not logged)"
        self._last, self.suppressed = now, 0
        return True


def install_accept_error_filter(interval: float = 60.0) -> None:
    """Rate-limit asyncio's accept errors and failed accept retries (once per process)."""
    logger = logging.getLogger("asyncio")
    installed = {f.prefix for f in logger.filters if isinstance(f, RepeatFilter)}
    for prefix in (ACCEPT_ERROR, ACCEPT_RETRY_ERROR):
        if prefix not in installed:
            logger.addFilter(RepeatFilter(prefix, interval))
