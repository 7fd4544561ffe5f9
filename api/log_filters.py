"""Keep the log readable when the process runs out of file descriptors.

With every descriptor taken (e.g. a thousand idle connections past ``ulimit -n``), asyncio
logs ``socket.accept() out of system resource`` with a traceback each time it retries the
listening socket. ``RepeatFilter`` lets one such line through per ``interval`` seconds and
reports how many it held back.
"""

from __future__ import annotations

import logging
import time

ACCEPT_ERROR = "socket.accept() out of system resource"


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


def install_accept_error_filter(interval: float = 60.0) -> RepeatFilter:
    """Rate-limit asyncio's accept errors (idempotent: one filter per process)."""
    logger = logging.getLogger("asyncio")
    for existing in logger.filters:
        if isinstance(existing, RepeatFilter) and existing.prefix == ACCEPT_ERROR:
            return existing
    repeat = RepeatFilter(ACCEPT_ERROR, interval)
    logger.addFilter(repeat)
    return repeat
