"""Shared entry-point wrapper: logging to stderr, one-line errors, exit codes."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from pipeline.errors import InputError

EXIT_INPUT = 2


def setup_logging() -> None:
    """Log to stderr at LOG_LEVEL (default INFO)."""
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_stage(main: Callable[[], object]) -> None:
    """Run a stage's ``main``; bad input ends the process with one line and exit code 2."""
    setup_logging()
    try:
        main()
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - the CLI's one-line message
        sys.exit(EXIT_INPUT)
