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

ROOT = Path(__file__).resolve().parent.parent
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
