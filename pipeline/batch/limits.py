"""Bounds on what one scoring run reads, counted while streaming (never taken from archive headers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError

MAX_EXPANDED_BYTES = 4 << 30  # the command line's default: refuses decompression bombs, fits any real year
MAX_ZIP_MEMBERS = 64  # files in one zip: a year is 4 tables (a few notes or a README beside them are fine)
MAX_ECHO = 100  # characters of a cell or header name repeated in a message (a cell may be 10 MB)


@dataclass(frozen=True)
class Limits:
    """What one run may read.

    ``max_expanded_bytes`` bounds the CSV bytes once unzipped and gunzipped (all files together,
    gz inside zip included), and separately the bytes a zip extracts to disk; ``max_rows`` bounds
    the data rows. ``None``: no bound.
    """

    max_expanded_bytes: int | None = MAX_EXPANDED_BYTES
    max_rows: int | None = None


DEFAULT_LIMITS = Limits()


class LimitExceeded(InputError):
    """The input is larger than a ``Limits`` bound; ``limit`` names the field of ``Limits``."""

    def __init__(self, limit: str, bound: int, *, file: str | Path | None = None) -> None:
        self.limit = limit
        self.bound = bound
        what = f"{bound:,} bytes once decompressed" if limit == "max_expanded_bytes" else f"{bound:,} rows"
        super().__init__(f"input larger than the limit of {what}", file=file)


class ByteBudget:
    """Bytes counted against ``Limits.max_expanded_bytes`` as they are read or written."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.used = 0

    def add(self, n: int, file: str | Path) -> None:
        """Count ``n`` more bytes; raises ``LimitExceeded`` past the bound."""
        self.used += n
        if self.limit is not None and self.used > self.limit:
            raise LimitExceeded("max_expanded_bytes", self.limit, file=file)


def check_rows(rows: int, limits: Limits, file: str | Path | None = None) -> None:
    """Raise ``LimitExceeded`` when ``rows`` is past ``limits.max_rows``."""
    if limits.max_rows is not None and rows > limits.max_rows:
        raise LimitExceeded("max_rows", limits.max_rows, file=file)


def clipped(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` for a message: at most ``limit`` characters, then how long it really is."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
