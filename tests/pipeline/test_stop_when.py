"""A per-run stop (``stop_when``): only the run whose event is set stops, the others go on."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipeline.batch.stop import Cancelled, check_stop, stop_when


def test_only_the_run_whose_event_is_set_is_cancelled() -> None:
    mine, other = threading.Event(), threading.Event()
    mine.set()

    def run(event: threading.Event) -> str:
        with stop_when(event):
            try:
                check_stop()
            except Cancelled:
                return "cancelled"
            return "ran"

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(run, [mine, other])) == ["cancelled", "ran"]
    check_stop()  # outside any run: no event, no stop


def test_the_event_counts_only_inside_the_block() -> None:
    event = threading.Event()
    with stop_when(event):
        check_stop()
        event.set()
        with pytest.raises(Cancelled):
            check_stop()
    check_stop()
