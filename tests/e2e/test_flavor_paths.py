"""Every way of scoring the registered model gives the same probabilities on the 2021 test year
(56,518 accidents of the bundled BAAC files): the batch job, the fast path (``LoadedModel``), the
API, the pyfunc in process, ``mlflow models serve`` and ``mlflow.pyfunc.spark_udf`` in local Spark.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from pipeline.config import BUNDLED_DIR
from pipeline.flavor import OUTPUT_COLUMNS, SPARK_RESULT_TYPE
from pipeline.model import load_model
from pipeline.raw_tables import find_tables, read_year
from pipeline.record_tables import records_from_tables
from pipeline.records import ID_COLUMN, RECORD_COLUMNS
from tests.servers import BIN, free_port, server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TEST_YEAR = 2021
N_ACCIDENTS = 56_518


@pytest.fixture(scope="module")
def year_records() -> pd.DataFrame:
    """The 2021 accident records, from the bundled raw tables."""
    records = records_from_tables(read_year(find_tables([BUNDLED_DIR / str(TEST_YEAR)])))
    assert len(records) == N_ACCIDENTS
    return records


@pytest.fixture(scope="module")
def batch_scores(registry, year_records: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> pd.Series:
    """The batch job's probabilities for the raw 2021 tables, by accident id."""
    out = tmp_path_factory.mktemp("batch") / "scores.parquet"
    cmd = [sys.executable, "-m", "pipeline.score", str(BUNDLED_DIR / str(TEST_YEAR)), "-o", str(out)]
    proc = subprocess.run(
        [*cmd, "--model", registry.champion_uri, "--n-jobs", "1"],
        env={**os.environ, "MLFLOW_TRACKING_URI": registry.tracking_uri},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    scores = pd.read_parquet(out, columns=["id", "proba"])
    assert len(scores) == N_ACCIDENTS
    return scores.set_index("id")["proba"].reindex(year_records[ID_COLUMN].astype(scores["id"].dtype))


def test_batch_fast_path_pyfunc_and_api_agree_bit_for_bit(
    registry, year_records: pd.DataFrame, batch_scores: pd.Series, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = batch_scores.to_numpy()
    fast = load_model(registry.champion_uri, registry.tracking_uri)
    np.testing.assert_array_equal(fast.predict_frame(year_records), expected)
    pyfunc = mlflow.pyfunc.load_model(registry.champion_uri)
    out = pyfunc.predict(year_records[list(RECORD_COLUMNS)])
    np.testing.assert_array_equal(out["probability"].to_numpy(), expected)
    np.testing.assert_array_equal(out["label"].to_numpy(), (expected >= fast.threshold).astype(np.int64))

    from api.main import create_app
    from api.settings import Settings
    from tests.api_helpers import wait_ready

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
    records: list[dict[str, Any]] = json.loads(year_records[list(RECORD_COLUMNS)].to_json(orient="records"))
    with TestClient(create_app(Settings())) as client:
        wait_ready(client)  # the model loads in the background
        batch: list[float] = []
        for start in range(0, len(records), 1000):
            response = client.post("/predict/batch", json={"records": records[start : start + 1000]})
            assert response.status_code == 200
            batch += [p["probability"] for p in response.json()["predictions"]]
        single = [client.post("/predict", json=r).json()["probability"] for r in records[:300]]
    np.testing.assert_array_equal(np.array(batch), expected)
    np.testing.assert_array_equal(np.array(single), expected[:300])


def _invocations(port: int, body: dict[str, Any]) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        predictions: list[dict[str, Any]] = json.loads(response.read())["predictions"]
    return predictions


def test_mlflow_models_serve_answers_records(
    registry, year_records: pd.DataFrame, batch_scores: pd.Series, tmp_path: Path
) -> None:
    port = free_port()
    cmd = [str(BIN / "mlflow"), "models", "serve", "-m", registry.champion_uri, "--env-manager", "local"]
    cmd += ["-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    # The scoring server runs ``uvicorn`` from PATH: the project's environment, not activated here.
    env = {"MLFLOW_TRACKING_URI": registry.tracking_uri, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    sample = year_records.iloc[:500]
    with server(cmd, f"http://127.0.0.1:{port}/ping", env=env, timeout=180, log=tmp_path / "serve.log"):
        split = json.loads(sample[list(RECORD_COLUMNS)].to_json(orient="split", index=False))
        answers = _invocations(port, {"dataframe_split": split})
        # Fields left out take their defaults (every record of a request names the same fields).
        records = [{"dep": "2A", "heure": 3, "com": None}, {"dep": "75", "heure": 17, "com": "75056"}]
        by_records = _invocations(port, {"dataframe_records": records})
    assert len(answers) == len(sample) and set(answers[0]) == set(OUTPUT_COLUMNS)
    np.testing.assert_allclose([a["probability"] for a in answers], batch_scores.to_numpy()[:500], rtol=0, atol=1e-7)
    model = load_model(registry.champion_uri, registry.tracking_uri)
    expected = [model.predict_row(model.row(r)) for r in records]
    np.testing.assert_allclose([a["probability"] for a in by_records], expected, rtol=0, atol=1e-7)
    assert [a["label"] for a in by_records] == [int(p >= model.threshold) for p in expected]


def test_spark_udf_scores_the_year_like_the_batch_job(
    registry, year_records: pd.DataFrame, batch_scores: pd.Series, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("PYSPARK_DRIVER_PYTHON", sys.executable)
    flat = tmp_path / "records.parquet"
    year_records[[ID_COLUMN, *RECORD_COLUMNS]].to_parquet(flat, index=False)
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("accident-severity-test")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.local.dir", str(tmp_path / "spark"))
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    try:
        predict = mlflow.pyfunc.spark_udf(
            spark, registry.champion_uri, result_type=SPARK_RESULT_TYPE, env_manager="local"
        )
        frame = spark.read.parquet(str(flat))
        scored = frame.select(ID_COLUMN, predict(*RECORD_COLUMNS).alias("p")).select(
            ID_COLUMN, F.col("p.probability").alias("probability"), F.col("p.label").alias("label")
        )
        result = scored.toPandas()
    finally:
        spark.stop()
    assert len(result) == N_ACCIDENTS
    result = result.set_index(ID_COLUMN).reindex(year_records[ID_COLUMN])
    expected = batch_scores.to_numpy()
    np.testing.assert_array_equal(result["probability"].to_numpy(), expected)
    threshold = load_model(registry.champion_uri, registry.tracking_uri).threshold
    assert result["label"].tolist() == (expected >= threshold).astype(int).tolist()
