"""Remote storage on a real S3 API (moto's server on 127.0.0.1): DVC push/pull through the
env-driven remote configuration DagsHub also uses, and MLflow artifacts stored in S3."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import numpy as np
import pytest

from pipeline.model import load_model
from pipeline.register import log_and_register
from pipeline.remote import RemoteSettings, configure
from pipeline.settings import PipelineSettings
from tests.servers import BIN, free_port, mlflow_server_cmd, server

pytestmark = pytest.mark.slow
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server with two buckets; yields its endpoint URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with server([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], f"{url}/moto-api/", log=log):
        client = boto3.client(
            "s3", endpoint_url=url, **{k.lower(): v for k, v in CREDS.items() if "KEY" in k}, region_name="us-east-1"
        )
        for bucket in ("dvc", "mlflow"):
            client.create_bucket(Bucket=bucket)
        yield url


def test_dvc_push_and_pull_through_s3(s3: str, tmp_path: Path, extracts: Path) -> None:
    env = {**os.environ, **CREDS, "DVC_NO_ANALYTICS": "1"}
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*dvc, "init", "-q"], cwd=tmp_path, check=True, env=env)
    shutil.copytree(extracts / "2021", tmp_path / "baac")
    subprocess.run([*dvc, "add", "-q", "baac"], cwd=tmp_path, check=True, env=env)
    settings = RemoteSettings(
        _env_file=None,
        dvc_remote_url="s3://dvc/project",
        dvc_remote_endpoint_url=s3,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    configure(settings, cwd=str(tmp_path), dvc=dvc)
    subprocess.run([*dvc, "push", "-q"], cwd=tmp_path, check=True, env=env)
    keys = boto3.client(
        "s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    ).list_objects_v2(Bucket="dvc")
    assert keys["KeyCount"] >= 4
    original = (tmp_path / "baac" / "usagers-2021.csv").read_bytes()
    shutil.rmtree(tmp_path / "baac")
    shutil.rmtree(tmp_path / ".dvc" / "cache")
    subprocess.run([*dvc, "pull", "-q"], cwd=tmp_path, check=True, env=env)
    assert (tmp_path / "baac" / "usagers-2021.csv").read_bytes() == original


def test_mlflow_artifacts_in_s3(s3: str, tmp_path: Path, trained, small_params) -> None:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    env = {**CREDS, "MLFLOW_S3_ENDPOINT_URL": s3, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = mlflow_server_cmd(port, f"sqlite:///{tmp_path / 'mlflow.db'}", "s3://mlflow/artifacts")
    with server(cmd, f"{uri}/health", env=env, cwd=tmp_path, log=tmp_path / "mlflow.log"):
        settings = PipelineSettings(mlflow_tracking_uri=uri, mlflow_experiment="s3-test")
        outcome = log_and_register(
            trained.model, small_params.model_copy(), settings, trained.metrics, trained.test, reports=trained.reports
        )
        assert outcome["version"] == "1"
        model = load_model(f"models:/{settings.model_name}/1", uri)
        np.testing.assert_array_equal(model.predict_frame(trained.test), trained.model.predict_frame(trained.test))
    objects = boto3.client(
        "s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    ).list_objects_v2(Bucket="mlflow")
    names = [o["Key"] for o in objects.get("Contents", [])]
    assert any(name.endswith("model.ubj") for name in names)
    assert any(name.endswith("plots/confusion.png") for name in names)
