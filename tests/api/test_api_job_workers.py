"""File-scoring jobs run in worker processes of the API (``api.services.job_runner``): the same
workers, forked from one fork server per API process, serve job after job, a worker that dies
costs its job a 503 (not the server), and shutdown leaves no worker behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from tests.api_helpers import real_csv, wait_ready


def fork_servers() -> list[psutil.Process]:
    """This process's multiprocessing fork servers (the TestClient runs the API in this process)."""
    found = []
    for child in psutil.Process().children():
        try:
            if "multiprocessing.forkserver" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def job_workers() -> list[psutil.Process]:
    """The job workers: the fork server's children."""
    found = []
    for server in fork_servers():
        try:
            found.extend(server.children())
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture
def settings(registry, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        MLFLOW_TRACKING_URI=registry.tracking_uri,
        MONITOR_RECORD=False,
        API_MAX_CONCURRENT_JOBS=1,
        API_JOB_CACHE_DIR=str(tmp_path / "jobs"),
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        yield c


def post(client: TestClient, content: bytes) -> httpx.Response:
    return client.post("/score/file", files={"file": ("records.csv", content, "text/csv")})


def test_jobs_run_in_one_lasting_worker_and_shutdown_stops_it(settings: Settings) -> None:
    before = {p.pid for p in job_workers()}
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        assert post(client, real_csv(1)).status_code == 200
        first = {p.pid for p in job_workers()} - before
        assert len(first) == 1  # API_MAX_CONCURRENT_JOBS workers, started by the first job
        second = post(client, real_csv(2))
        assert second.status_code == 200 and second.json()["rows_total"] == 300
        assert {p.pid for p in job_workers()} - before == first  # the same worker, still there
    gone = psutil.wait_procs([psutil.Process(pid) for pid in first if psutil.pid_exists(pid)], timeout=10)[1]
    assert gone == []  # shutdown stopped it
    assert len(fork_servers()) == 1  # started by the app, kept for the next one: it ends with this process


def test_a_dead_worker_is_a_503_and_the_next_job_gets_a_new_one(client: TestClient) -> None:
    assert post(client, real_csv(1)).status_code == 200  # the worker is up
    (worker,) = job_workers()
    answers: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: answers.append(post(client, real_csv(300))))
    sender.start()
    deadline = time.monotonic() + 60
    while worker.cpu_percent(interval=0.05) < 5 and time.monotonic() < deadline:
        pass  # wait until it scores (the upload is received and saved first)
    worker.kill()
    sender.join(120)
    assert answers and answers[0].status_code == 503, answers[0].text if answers else "no answer"
    assert "worker" in answers[0].json()["detail"]
    again = post(client, real_csv(1))
    assert again.status_code == 200, again.text
    assert [p.pid for p in job_workers()] != [worker.pid]
    assert client.get("/health").status_code == 200
