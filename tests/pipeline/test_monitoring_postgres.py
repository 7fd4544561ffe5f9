"""Scoring runs through an MLflow server backed by PostgreSQL, with artifacts on S3 (moto), all on 127.0.0.1.

PostgreSQL is Debian's server (``apt-get install postgresql``), started here with
``initdb`` / ``pg_ctl`` in a temporary folder, as the ``postgres`` user when the tests run as root.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import psycopg
import pytest

from pipeline.monitoring import InputSummary, ModelRef, build_profile, fingerprint, scoring_run
from pipeline.monitoring.tracking import download_output, get_scoring_run, list_scoring_runs, log_scoring_run
from pipeline.records import TARGET
from tests.servers import BIN, free_port, mlflow_server_cmd, server

pytestmark = pytest.mark.slow
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def pg_bin(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, or where Debian installs it (off PATH)."""
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if isinstance(found, list):
        return found[-1] if found else None
    return found


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A PostgreSQL server on a free port of 127.0.0.1 with an ``mlflow`` database; yields its SQLAlchemy URL."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL server not installed (apt-get install postgresql)")
    # The server refuses to run as root: as root, run it as Debian's postgres user, in a folder it owns.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = Path(tempfile.mkdtemp(prefix="pg-"))
    if as_user:
        shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", free_port()
    run = [*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]
    subprocess.run(run, check=True, capture_output=True)
    options = f"-h 127.0.0.1 -p {port} -k {base} -F"
    ctl = [*as_user, pg_ctl, "-D", str(data), "-l", str(base / "server.log"), "-o", options, "-w"]
    subprocess.run([*ctl, "start"], check=True, capture_output=True)
    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE mlflow")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run([*ctl, "-m", "fast", "stop"], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server with an ``mlflow`` bucket; yields its endpoint URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with server([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], f"{url}/moto-api/", log=log):
        s3_client(url).create_bucket(Bucket="mlflow")
        yield url


def s3_client(url: str):
    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def test_scoring_runs_on_postgres_and_s3(postgres: str, s3: str, trained, records, tmp_path: Path) -> None:
    frame = records[2021]
    proba = trained.model.predict_frame(frame)
    profile = build_profile(records[2020], trained.model.predict_frame(records[2020]))
    scored = tmp_path / "2021.parquet"
    frame.assign(proba=proba).to_parquet(scored)
    files = {"caracteristiques.csv": "cd" * 32}
    record = scoring_run(
        started_at=datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
        source="api",
        model=ModelRef(name="accident-severity", version="3", alias="champion"),
        input=InputSummary(
            fingerprint=fingerprint(files), files=files, input_rows=len(frame), scored=len(frame), rejected=0
        ),
        profile=profile,
        records=frame,
        proba=proba,
        threshold=trained.model.threshold,
        outcomes=frame[TARGET].to_numpy(),
    )
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    env = {**CREDS, "MLFLOW_S3_ENDPOINT_URL": s3, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = mlflow_server_cmd(port, postgres, "s3://mlflow/artifacts")
    with server(cmd, f"{uri}/health", env=env, cwd=tmp_path, log=tmp_path / "mlflow.log", timeout=180):
        run_id = log_scoring_run(record, {"scored": scored}, tracking_uri=uri)
        page = list_scoring_runs(tracking_uri=uri)
        assert [r.run_id for r in page.runs] == [run_id]
        assert page.runs[0].verdict == record.drift.verdict
        assert page.runs[0].metrics["realized.roc_auc"] == record.realized.roc_auc
        stored = get_scoring_run(run_id, tracking_uri=uri)
        assert stored.record == record
        back = download_output(run_id, "scored", tmp_path / "back", tracking_uri=uri)
        assert back.read_bytes() == scored.read_bytes()
    # The run is a row of PostgreSQL; its artifacts are objects in the bucket.
    with psycopg.connect(postgres.replace("postgresql+psycopg", "postgresql")) as conn:
        rows = conn.execute("SELECT status FROM runs WHERE run_uuid = %s", (run_id,)).fetchall()
        tags = dict(conn.execute("SELECT key, value FROM tags WHERE run_uuid = %s", (run_id,)).fetchall())
    assert rows == [("FINISHED",)]
    assert tags["source"] == "api"
    keys = [o["Key"] for o in s3_client(s3).list_objects_v2(Bucket="mlflow").get("Contents", [])]
    for name in ("scoring_run.json", "outputs.json", "drift/drift.csv", "drift/drift.json", "outputs/2021.parquet"):
        assert any(key.endswith(f"{run_id}/artifacts/{name}") for key in keys), name
