"""The start of a job worker process, kept free of heavy imports.

``ProcessPoolExecutor`` imports a worker's initializer's module before it calls it: defined
here (``os`` and ``signal`` only), the initializer lowers the worker's priority before the
worker imports pandas, pyarrow, XGBoost and MLflow for its first job (seconds of CPU that
would otherwise compete with requests at full priority when two workers start together).
"""

from __future__ import annotations

import os
import signal

WORKER_NICE = 5  # batch work yields the cores to requests (niceness added to the API's)


def start_worker() -> None:
    """Run first in each job worker: lower its priority; leave Ctrl-C to the API process."""
    os.nice(WORKER_NICE)
    # Ctrl-C reaches the whole process group: the API decides what stops, through the cancel file.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
