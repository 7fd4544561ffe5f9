"""Two API processes sharing one tracking server: a job uploaded to one is listed, paged and downloaded on the
other, and still there after a restart (real ``mlflow server``, real uvicorn processes, 127.0.0.1 only)."""

from __future__ import annotations

import io
import shutil
import sys
from contextlib import ExitStack
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.conftest import UPLOAD
from tests.servers import free_port, mlflow_server_cmd, server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def api_process(port: int, tracking_uri: str, cache: Path, log: Path) -> tuple[list[str], str, dict[str, str], Path]:
    """``python -m api`` on ``port`` against the tracking server."""
    env = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "API_PORT": str(port),
        "API_JOB_CACHE_DIR": str(cache),
        "API_MODEL_POLL_SECONDS": "0",
        # Its own experiment: the copied registry already holds scoring runs of other tests.
        "MONITOR_EXPERIMENT": "replicas-test",
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    return [sys.executable, "-m", "api"], f"http://127.0.0.1:{port}/ready", env, log


def test_two_replicas_share_jobs_through_the_tracking_server(registry, tmp_path: Path) -> None:
    shutil.copy(Path(registry.tracking_uri.removeprefix("sqlite:///")), tmp_path / "mlflow.db")  # the model's store
    mlflow_port, port_a, port_b = free_port(), free_port(), free_port()
    tracking = f"http://127.0.0.1:{mlflow_port}"
    with ExitStack() as stack:
        stack.enter_context(
            server(
                mlflow_server_cmd(mlflow_port, f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "served")),
                f"{tracking}/health",
                log=tmp_path / "mlflow.log",
            )
        )
        cmd, ready_b, env_b, log_b = api_process(port_b, tracking, tmp_path / "cache-b", tmp_path / "b.log")
        stack.enter_context(server(cmd, ready_b, env_b, cwd=ROOT, log=log_b, timeout=180))
        b = stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{port_b}", timeout=120))

        cmd, ready_a, env_a, log_a = api_process(port_a, tracking, tmp_path / "cache-a", tmp_path / "a.log")
        with (
            server(cmd, ready_a, env_a, cwd=ROOT, log=log_a, timeout=180),
            httpx.Client(base_url=f"http://127.0.0.1:{port_a}", timeout=120) as a,
        ):
            ids = []
            for name in ("first.csv", "second.csv"):
                response = a.post("/score/file", files={"file": (name, UPLOAD.read_bytes(), "text/csv")})
                assert response.status_code == 200, response.text
                ids.append(response.json()["job_id"])

        # B never saw the uploads: it lists, pages and downloads them from the tracking server.
        page1 = b.get("/score/jobs", params={"limit": 1}).json()
        assert [j["id"] for j in page1["jobs"]] == [ids[1]]
        page2 = b.get("/score/jobs", params={"limit": 1, "page_token": page1["next_page_token"]}).json()
        assert [j["id"] for j in page2["jobs"]] == [ids[0]]
        detail = b.get(f"/score/jobs/{ids[0]}").json()
        assert detail["input_name"] == "first.csv" and len(detail["drift"]) > 10
        parquet = b.get(detail["downloads"]["scored_parquet"])
        assert parquet.status_code == 200
        assert len(pd.read_parquet(io.BytesIO(parquet.content))) == detail["scored"]
        assert b.get(detail["downloads"]["scored_csv"]).status_code == 200
        assert b.get(f"/score/file/{ids[0]}", params={"page": 2, "page_size": 10}).json()["page"] == 2

        # A restarted (its cache folder emptied): every job still listed and downloadable.
        shutil.rmtree(tmp_path / "cache-a", ignore_errors=True)
        with (
            server(cmd, ready_a, env_a, cwd=ROOT, log=log_a, timeout=180),
            httpx.Client(base_url=f"http://127.0.0.1:{port_a}", timeout=120) as a,
        ):
            listed = a.get("/score/jobs").json()
            assert [j["id"] for j in listed["jobs"]] == ids[::-1]
            summary = a.get(f"/score/jobs/{ids[1]}/summary.json")
            assert summary.status_code == 200 and summary.json()["counts"]["scored"] == detail["scored"]
