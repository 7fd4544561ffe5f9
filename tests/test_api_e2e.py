"""A real ``uvicorn api.main:app`` process on 127.0.0.1, driven over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeline.records import ID_COLUMN, RECORD_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with code {process.returncode}")
        try:
            if httpx.get(f"{base}/ready", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{base}/ready did not answer 200 within {timeout} s")


@pytest.fixture(scope="module")
def server(registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": registry.tracking_uri,
        "API_KEY": "e2e-key",
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    log = (tmp_path_factory.mktemp("uvicorn") / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_predict_over_http(server: str, registry, trained) -> None:
    assert httpx.get(f"{server}/health").json() == {"status": "ok"}
    response = httpx.post(f"{server}/predict?explain=true", json={"lum": 3, "dep": "2A"}, timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["model"]["version"] == registry.version
    assert 0 <= body["probability"] <= 1
    assert len(body["explanation"]["factors"]) == 5


def test_upload_csv_over_http(server: str, trained) -> None:
    sample = trained.test.iloc[:25]
    content = sample[[ID_COLUMN, *RECORD_COLUMNS]].to_csv(index=False).encode()
    response = httpx.post(f"{server}/score/file", files={"file": ("sample.csv", content, "text/csv")}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rows_total"] == 25
    assert [row["proba"] for row in body["rows"]] == trained.model.predict_frame(sample).tolist()
    parquet = httpx.get(f"{server}{body['downloads']['parquet']}", timeout=10)
    assert parquet.status_code == 200 and parquet.content[:4] == b"PAR1"
    metrics = httpx.get(f"{server}/metrics").text
    assert 'route="/score/file",status="200"' in metrics
