"""A real ``uvicorn api.main:app`` process on 127.0.0.1, driven over HTTP."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeline.records import ID_COLUMN, RECORD_COLUMNS
from tests.servers import free_port
from tests.servers import server as run_server

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {
        "MLFLOW_TRACKING_URI": registry.tracking_uri,
        "API_KEY": "e2e-admin-key-of-24-characters",
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path_factory.mktemp("uvicorn") / "server.log"
    with run_server(cmd, f"{base}/ready", env=env, cwd=ROOT, log=log):
        yield base


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


HOSTILE_OVER_HTTP = [
    b'{"lat": NaN}',
    b'{"lat": 1e400}',
    b'{"dep": "\\ud800"}',
    b"[" * 100_000,
    b'{"records": [' + b",".join([b"{}"] * 70_000) + b"]}",
]


def test_hostile_json_over_http(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        for body in HOSTILE_OVER_HTTP:
            response = client.post("/predict/batch", content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 422 and len(response.content) < 64 * 1024
            assert response.json()["detail"]
        big = client.post("/predict", content=b'{"dep": "' + b"x" * 10_000_000 + b'"}')
        assert big.status_code == 413
        assert client.post("/predict", json={}, headers={"Origin": "http://evil.example"}).status_code == 403
        assert client.get("/health").status_code == 200
        assert client.post("/predict", json={}).status_code == 200


def test_production_front_under_idle_connections(registry, tmp_path: Path) -> None:
    """`python -m api` with few descriptors: idle connections past API_LIMIT_CONCURRENCY get a
    fast 503 instead of a hang, running out of descriptors does not flood the log, and the
    server answers again once the idle clients go."""
    import socket
    import time

    port = free_port()
    env = {
        "MLFLOW_TRACKING_URI": registry.tracking_uri,
        "API_PORT": str(port),
        "API_LIMIT_CONCURRENCY": "20",
        "API_TIMEOUT_KEEP_ALIVE": "2",
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    cmd = ["sh", "-c", f"ulimit -n 96 && exec {sys.executable} -m api"]
    with run_server(cmd, f"{base}/ready", env=env, cwd=ROOT, log=log):
        idle = []
        try:
            for _ in range(30):  # more connections than API_LIMIT_CONCURRENCY, all silent
                idle.append(socket.create_connection(("127.0.0.1", port)))
            time.sleep(0.5)
            start = time.monotonic()
            busy = httpx.get(f"{base}/health", timeout=10)
            assert busy.status_code == 503 and time.monotonic() - start < 2
            for _ in range(150):  # past the descriptor limit: accept() fails with EMFILE
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            time.sleep(4)
        finally:
            for sock in idle:
                sock.close()
        time.sleep(1)
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200
        assert httpx.post(f"{base}/predict", json={}, timeout=10).status_code == 200
    text = log.read_text(errors="replace")
    assert text.count("out of system resource") <= 2, text[-2000:]
    assert len(text) < 100_000
