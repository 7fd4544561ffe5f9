"""Shared entry-point wrapper: logging to stderr, one-line errors, the exit codes of every command."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from pipeline.errors import InputError

EXIT_INPUT = 2  # bad input: one line naming the file, column and lines
EXIT_MODEL = 3  # the model could not be found or loaded
EXIT_IO = 4  # file system error (disk full, file removed mid-run...)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # SIGTERM, as docker stop and Kubernetes send it (128 + SIGTERM)


def setup_logging() -> None:
    """Log to stderr at LOG_LEVEL (default INFO)."""
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def fail(error: Exception | str, code: int) -> int:
    """Print ``error: ...`` in one line on stderr, whatever the underlying library wrote; returns ``code``."""
    message = " ".join(str(error).split())
    print(f"error: {message}", file=sys.stderr)  # noqa: T201 - the CLI's one-line message
    return code


def run_stage(main: Callable[[], object]) -> None:
    """Run a stage's ``main``; bad input ends the process with one line and exit code 2."""
    setup_logging()
    try:
        main()
    except InputError as exc:
        sys.exit(fail(exc, EXIT_INPUT))
