"""API file-scoring jobs are scoring runs in MLflow: listed, paged, described, downloaded, also by a fresh app."""

from __future__ import annotations

import base64
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from api.main import create_app
from api.settings import Settings
from pipeline.records import RECORD_FIELDS
from tests.api_helpers import wait_ready
from tests.conftest import UPLOAD


@pytest.fixture
def settings(registry, tmp_path: Path) -> Settings:
    """Settings of one test: the registry's store, scoring runs in an experiment of their own."""
    return Settings(
        _env_file=None,
        MLFLOW_TRACKING_URI=registry.tracking_uri,
        MONITOR_EXPERIMENT=f"jobs-{tmp_path.name}",
        MLFLOW_ARTIFACTS_DIR=str(tmp_path / "artifacts"),
        API_JOB_CACHE_DIR=tmp_path / "cache",
        API_MAX_CONCURRENT_JOBS=1,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        yield c


def upload(client: TestClient, name: str = "accidents 2021.csv") -> dict[str, object]:
    response = client.post("/score/file?page_size=10", files={"file": (name, UPLOAD.read_bytes(), "text/csv")})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_an_upload_is_a_job_listed_described_and_downloadable(client: TestClient, settings: Settings) -> None:
    body = upload(client)
    job_id = str(body["job_id"])
    assert len(job_id) == 32  # the MLflow run id
    listed = client.get("/score/jobs").json()
    assert [j["id"] for j in listed["jobs"]] == [job_id]
    job = listed["jobs"][0]
    assert job["source"] == "api" and job["input_name"] == "accidents 2021.csv"
    assert job["input_rows"] == 150 and job["scored"] + job["rejected"] == 150
    assert job["verdict"] in ("ok", "watch", "alert")
    assert job["realized"] is not None and 0 <= job["realized"]["recall"] <= 1  # the file carries `severe`

    detail = client.get(f"/score/jobs/{job_id}").json()
    assert {d["field"] for d in detail["drift"]} == {f.name for f in RECORD_FIELDS}
    assert sum(detail["score_histogram"]["counts"]) == job["scored"]
    assert sum(detail["confusion"].values()) == job["scored"]
    assert detail["downloads"]["scored_parquet"] == f"/score/jobs/{job_id}/scored.parquet"

    parquet = client.get(detail["downloads"]["scored_parquet"])
    assert parquet.status_code == 200
    scored = pd.read_parquet(io.BytesIO(parquet.content))
    assert len(scored) == job["scored"]
    csv = pd.read_csv(io.StringIO(client.get(detail["downloads"]["scored_csv"]).text))
    assert csv["proba"].round(9).tolist() == scored["proba"].round(9).tolist()
    assert client.get(detail["downloads"]["rejects_csv"]).text.startswith("id,line,column,value,reason")
    summary = client.get(detail["downloads"]["summary_json"]).json()
    assert summary["counts"]["scored"] == job["scored"]
    # The upload's own page links keep working under the run id.
    assert client.get(f"/score/file/{job_id}?page=2&page_size=10").json()["page"] == 2


def test_jobs_page_newest_first_and_outlive_the_process(client: TestClient, settings: Settings) -> None:
    first, second = upload(client, "a.csv")["job_id"], upload(client, "b.csv")["job_id"]
    page1 = client.get("/score/jobs?limit=1").json()
    assert [j["id"] for j in page1["jobs"]] == [second]
    assert page1["next_page_token"]
    page2 = client.get("/score/jobs", params={"limit": 1, "page_token": page1["next_page_token"]}).json()
    assert [j["id"] for j in page2["jobs"]] == [first]
    assert client.get("/score/jobs?limit=0").status_code == 422
    assert client.get("/score/jobs?limit=101").status_code == 422
    # Forged tokens the SQL store refuses in other ways (INTERNAL_ERROR) are the client's error too.
    for body in (b"garbage", b"[1]", b'{"offset": 1e400}', b'{"offset": 99999999999999999999999}'):
        token = body.decode() if body == b"garbage" else base64.b64encode(body).decode()
        refused = client.get("/score/jobs", params={"page_token": token})
        assert refused.status_code == 422, (body, refused.text)
        assert "invalid page_token" in refused.json()["detail"]

    # Another process (a replica, or this one restarted): nothing in its cache, everything in MLflow.
    with TestClient(create_app(settings)) as other:
        wait_ready(other)
        assert [j["id"] for j in other.get("/score/jobs").json()["jobs"]] == [second, first]
        response = other.get(f"/score/jobs/{first}/scored.parquet")
        assert response.status_code == 200
        assert len(pd.read_parquet(io.BytesIO(response.content))) > 0
        assert other.get(f"/score/file/{first}?page=1&page_size=5").status_code == 200


def test_unknown_jobs_404_and_deleted_ones_410(client: TestClient, settings: Settings, registry) -> None:
    for job in ("0" * 32, "not-a-run", "../../etc"):
        for suffix in ("", "/scored.parquet", "/scored.csv", "/rejects.csv", "/summary.json"):
            response = client.get(f"/score/jobs/{job}{suffix}")
            assert response.status_code == 404, (job, suffix)
    # A run that is not a scoring run (the model's training run) is no job either.
    assert client.get(f"/score/jobs/{registry.run_id}").status_code == 404

    deleted = str(upload(client)["job_id"])
    MlflowClient(registry.tracking_uri).delete_run(deleted)
    assert client.get(f"/score/jobs/{deleted}").status_code == 410

    expired = str(upload(client)["job_id"])
    run = MlflowClient(registry.tracking_uri).get_run(expired)
    shutil.rmtree(Path(run.info.artifact_uri.removeprefix("file://")))  # the artifact store lost its files
    with TestClient(create_app(settings)) as other:  # nothing cached in this one
        wait_ready(other)
        assert other.get(f"/score/jobs/{expired}").status_code == 410
        response = other.get(f"/score/jobs/{expired}/scored.parquet")
        assert response.status_code == 410
        assert "artifact store" in response.json()["detail"]


def test_too_many_concurrent_jobs_get_429_with_retry_after(client: TestClient) -> None:
    store = client.app.state.jobs  # type: ignore[attr-defined]
    assert store.try_start()  # a job is running: API_MAX_CONCURRENT_JOBS=1
    try:
        response = client.post("/score/file", files={"file": ("a.csv", UPLOAD.read_bytes(), "text/csv")})
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) > 0
        assert "API_MAX_CONCURRENT_JOBS" in response.json()["detail"]
    finally:
        store.finish()
    assert client.post("/score/file", files={"file": ("a.csv", UPLOAD.read_bytes(), "text/csv")}).status_code == 200


def test_last_run_gauges(client: TestClient) -> None:
    body = upload(client)
    verdict = client.get(f"/score/jobs/{body['job_id']}").json()["verdict"]
    text = client.get("/metrics").text
    assert 'api_last_scoring_run_rows{kind="input"} 150.0' in text
    assert f'api_last_scoring_run_verdict{{verdict="{verdict}"}} 1.0' in text
    assert json.dumps(verdict) != "null"


def test_tracking_server_down_is_503_not_500(tmp_path: Path) -> None:
    from tests.servers import free_port

    settings = Settings(
        _env_file=None,
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}",  # nobody listens
        API_REGISTRY_RETRIES=0,
        API_REGISTRY_TIMEOUT_SECONDS=2,
        API_JOB_CACHE_DIR=tmp_path / "cache",
    )
    with TestClient(create_app(settings)) as c:
        assert c.get("/score/jobs").status_code == 503
        assert c.get(f"/score/jobs/{'a' * 32}").status_code == 503
        assert c.get(f"/score/jobs/{'a' * 32}/scored.parquet").status_code == 503
