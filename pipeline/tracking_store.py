"""The embedded MLflow store (a SQLite file), created whole or not at all.

MLflow builds a new SQLite store by running its schema migrations in the file itself, which
takes seconds; a process that opens the file meanwhile (the API following the alias while
``make run`` trains) finds tables missing and starts the same migrations, and one of the two
fails. So the store is built in a temporary file beside it and linked into place, never over
a store that exists: readers see no file or a complete one. ``make run`` builds it in the
background while the pipeline's first stages run, and ``register`` builds it when it is
still missing.

python -m pipeline.tracking_store   # the store of MLFLOW_TRACKING_URI (PipelineSettings)
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

from pipeline.settings import PipelineSettings

log = logging.getLogger(__name__)

SQLITE_PREFIX = "sqlite:///"


def sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for other stores and in-memory ones)."""
    if not tracking_uri.startswith(SQLITE_PREFIX):
        return None
    path = tracking_uri.removeprefix(SQLITE_PREFIX).split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def ensure_store(tracking_uri: str) -> bool:
    """Create the SQLite store of ``tracking_uri`` if it is missing; True when this call created it.

    Other stores (a tracking server, Postgres) are left to MLflow.
    """
    db = sqlite_file(tracking_uri)
    if db is None or db.exists():
        return False
    import mlflow

    db.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{db.name}.", suffix=".tmp", dir=db.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        tmp.unlink()  # SQLite creates it: an empty file is not a database MLflow would initialise
        # Opening the store runs the migrations; nothing else is written.
        mlflow.MlflowClient(tracking_uri=f"{SQLITE_PREFIX}{tmp}").search_experiments(max_results=1)
        try:
            os.link(tmp, db)  # fails if a store appeared meanwhile: that one stays
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links
            if db.exists():
                return False
            os.replace(tmp, db)
        log.info("created the MLflow store %s", db)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def main() -> None:
    """Create the store of ``MLFLOW_TRACKING_URI`` if it is missing.

    TERM (``make run`` stopped meanwhile) exits through ``ensure_store``'s clean-up: no temporary
    file is left.
    """
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    ensure_store(PipelineSettings().mlflow_tracking_uri)


if __name__ == "__main__":
    from pipeline.cli import run_stage

    run_stage(main)
