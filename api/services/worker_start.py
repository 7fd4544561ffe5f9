"""The start of a job worker process, kept free of heavy imports.

A worker is forked from the fork server (``api.services.job_runner``), which has imported the
job's modules already; the initializer, run before its first job, lowers its priority, leaves
Ctrl-C to the API and points ``tempfile`` at the API's temporary folder. Its module imports
only the standard library, so that a worker started another way would not import pandas or
MLflow at full priority before it is niced.
"""

from __future__ import annotations

import os
import signal
import tempfile

WORKER_NICE = 5  # batch work yields the cores to requests (niceness added to the API's)


def start_worker(tempdir: str) -> None:
    """Run first in each job worker: lower its priority; leave Ctrl-C to the API process; make
    ``tempdir`` (the API's, where zips are extracted) the temporary folder."""
    os.nice(WORKER_NICE)
    tempfile.tempdir = tempdir
    # Ctrl-C reaches the whole process group: the API decides what stops, through the cancel file.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
