"""The API in process (TestClient, lifespan included) against the temporary MLflow registry."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import math
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from api.evaluation import load_evaluation
from api.explain import DERIVED_LABELS, feature_label, value_label
from api.jobs import Job, JobStore
from api.main import create_app
from api.settings import Settings
from pipeline.feature_spec import FEATURE_COLUMNS
from pipeline.metrics import confusion
from pipeline.records import FIELDS, ID_COLUMN, RECORD_COLUMNS, RECORD_FIELDS, TARGET
from tests.api_helpers import wait_error, wait_ready

API_KEY = "test-admin-key-of-24-chars+"


def make_settings(monkeypatch: pytest.MonkeyPatch, tracking_uri: str, **env: str) -> Settings:
    """Settings read from the environment, as in production (``.env`` ignored)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.setenv("API_KEY", API_KEY)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


@pytest.fixture(scope="module")
def app(registry) -> Iterator[FastAPI]:
    with pytest.MonkeyPatch.context() as mp:
        yield create_app(make_settings(mp, registry.tracking_uri))


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        wait_ready(c)
        yield c


def as_json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Records as a client would send them (NaN and NA -> null)."""
    rows: list[dict[str, Any]] = json.loads(frame[list(RECORD_COLUMNS)].to_json(orient="records"))
    return rows


# --- health, readiness, settings


def test_health_and_ready(client: TestClient, registry) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert body["model"]["name"] == registry.model_name
    assert body["model"]["version"] == registry.version
    assert body["model"]["alias"] == "champion"
    assert body["model"]["run_id"] == registry.run_id


def test_no_champion_starts_but_is_not_ready(registry, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(monkeypatch, registry.tracking_uri, MODEL_ALIAS="no-such-alias")
    with TestClient(create_app(settings)) as c:
        assert c.get("/health").status_code == 200
        wait_error(c)
        ready = c.get("/ready")
        assert ready.status_code == 503
        assert "no-such-alias" in ready.json()["detail"]
        for method, path in (("post", "/predict"), ("get", "/model"), ("get", "/model/evaluation")):
            response = c.request(method.upper(), path, json={} if method == "post" else None)
            assert response.status_code == 503, path
        retry = c.post("/admin/reload", headers={"X-API-Key": API_KEY})
        assert retry.status_code == 503
        assert retry.json()["detail"].startswith("reload failed")
        assert "Traceback" not in retry.text


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_PORT", "9001")
    monkeypatch.setenv("API_HOST", "0.0.0.0")
    monkeypatch.setenv("API_CORS_ORIGINS", "http://a.example, http://b.example")
    monkeypatch.setenv("API_KEY", "  ")
    monkeypatch.setenv("API_MAX_BATCH", "7")
    monkeypatch.setenv("MODEL_NAME", "other")
    monkeypatch.setenv("MODEL_ALIAS", "candidate")
    s = Settings(_env_file=None)
    assert (s.port, s.host, s.max_batch, s.api_key) == (9001, "0.0.0.0", 7, None)
    assert s.cors_origins == ["http://a.example", "http://b.example"]
    assert s.model_uri == "models:/other@candidate"
    monkeypatch.setenv("API_CORS_ORIGINS", '["http://c.example"]')
    monkeypatch.setenv("API_MAX_UPLOAD_MB", "0.5")
    s = Settings(_env_file=None)
    assert s.cors_origins == ["http://c.example"]
    assert s.max_upload_bytes == 512 * 1024
    assert Settings.model_fields["port"].default == 8000


def test_unset_key_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="api.main"):
        create_app(Settings(_env_file=None, API_KEY=""))
    assert "admin endpoints are disabled" in caplog.text


def test_cors(client: TestClient) -> None:
    allowed = client.options(
        "/predict",
        headers={"Origin": "http://localhost:8501", "Access-Control-Request-Method": "POST"},
    )
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:8501"
    refused = client.get("/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in refused.headers


# --- /model


def test_model_info(client: TestClient, registry, trained) -> None:
    body = client.get("/model").json()
    assert body["version"] == registry.version
    assert body["threshold"] == pytest.approx(trained.model.threshold)
    assert set(body["metrics"]) == {"train", "valid", "test"}
    assert body["metrics"]["test"]["roc_auc"] == trained.metrics["test"]["roc_auc"]
    assert body["feature_columns"] == list(trained.model.spec.columns)
    assert [f["name"] for f in body["features"]] == list(RECORD_COLUMNS)
    fields = {f["name"]: f for f in body["features"]}
    lum = fields["lum"]
    assert lum["kind"] == "code" and lum["type"] == "integer"
    assert {c["code"] for c in lum["codes"]} == set(FIELDS["lum"].allowed())
    assert all(c["label"] for c in lum["codes"])
    assert fields["dep"]["type"] == "string" and "2A" in {c["code"] for c in fields["dep"]["codes"]}
    assert fields["heure"]["minimum"] == 0 and fields["heure"]["maximum"] == 23
    assert fields["lat"]["optional"] is True and fields["lat"]["default"] is None
    assert fields["vma"]["default"] == FIELDS["vma"].default
    assert {d["name"] for d in body["derived_features"]} <= set(DERIVED_LABELS)
    assert body["gate"]["passed"] is True
    assert set(body["gate"]["thresholds"]) >= {"min_roc_auc", "min_f1", "min_recall"}
    assert body["training"]["best_iteration"] == trained.model.info["best_iteration"]


def test_model_info_gate_comes_from_the_model(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.config

    def missing() -> None:
        raise FileNotFoundError("params.yaml")

    monkeypatch.setattr(pipeline.config, "params", missing)  # serving never reads params.yaml
    body = client.get("/model").json()
    assert body["gate"]["thresholds"] == {"min_roc_auc": 0.5, "min_f1": 0.1, "min_recall": 0.1, "tolerance": 0.002}
    assert body["loading"]["flavor"] == "python_function"
    assert body["loading"]["uri"] == "models:/accident-severity@champion"
    assert "spark_udf" in body["loading"]["spark"]


def test_model_evaluation(client: TestClient, trained) -> None:
    body = client.get("/model/evaluation").json()
    y = trained.test[TARGET].to_numpy()
    proba = trained.model.predict_frame(trained.test)
    assert body["confusion"] == confusion(y, proba, trained.model.threshold)
    assert body["threshold"] == pytest.approx(trained.model.threshold)
    table = body["thresholds"]
    assert len(table) == 101 and table[0]["threshold"] == 0 and table[-1]["threshold"] == 1
    at_half = next(row for row in table if row["threshold"] == 0.5)
    assert {k: at_half[k] for k in ("tn", "fp", "fn", "tp")} == confusion(y, proba, 0.5)
    assert body["roc"][0].keys() == {"fpr", "tpr", "threshold"}
    assert body["pr"][0].keys() == {"recall", "precision", "threshold"}
    importance = body["feature_importance"]
    assert {row["feature"] for row in importance} == set(trained.model.spec.columns)
    assert all(row["label_en"] != row["feature"] for row in importance)
    assert body["metrics"]["n"] == len(y)


def test_model_evaluation_missing(app: FastAPI, client: TestClient, registry) -> None:
    holder = app.state.holder
    serving = holder.current
    holder.current = dataclasses.replace(serving, evaluation=None)
    try:
        response = client.get("/model/evaluation")
        assert response.status_code == 404
        assert "no evaluation" in response.json()["detail"]
        assert client.get("/model").json()["gate"]["passed"] is True  # carried by the model, not the run
    finally:
        holder.current = serving
    # A run without the artifacts, and no run at all.
    empty_run = MlflowClient(tracking_uri=registry.tracking_uri).create_run("0").info.run_id
    assert load_evaluation(empty_run, registry.tracking_uri) is None
    assert load_evaluation(None, registry.tracking_uri) is None


def test_evaluation_needs_test_metrics(registry, tmp_path: Path) -> None:
    mlflow_client = MlflowClient(tracking_uri=registry.tracking_uri)
    experiment = mlflow_client.create_experiment(f"no-test-{tmp_path.name}", artifact_location=tmp_path.as_uri())
    run_id = mlflow_client.create_run(experiment).info.run_id
    mlflow_client.log_dict(run_id, {"train": {"n": 1}}, "metrics/metrics.json")
    for artifact in ("plots/roc.csv", "plots/pr.csv", "tables/thresholds.csv", "tables/feature_importance.csv"):
        mlflow_client.log_text(run_id, "a,b\n1,2\n", artifact)
    # No gate.json, and no test split: nothing to show.
    assert load_evaluation(run_id, registry.tracking_uri) is None


# --- /predict


def test_predict_defaults_and_parity(client: TestClient, trained) -> None:
    response = client.post("/predict", json={})
    assert response.status_code == 200
    body = response.json()
    defaults = pd.DataFrame([{f.name: f.default for f in RECORD_FIELDS}])
    expected = float(trained.model.predict_frame(defaults)[0])
    assert body["probability"] == expected
    assert body["label"] == int(expected >= trained.model.threshold)
    assert body["label_name"] == ("severe" if body["label"] else "not severe")
    assert body["explanation"] is None


def test_predict_matches_batch_job_bit_for_bit(client: TestClient, trained) -> None:
    sample = trained.test.iloc[:60]
    records = as_json_records(sample)
    expected = trained.model.predict_frame(sample)
    single = [client.post("/predict", json=r).json()["probability"] for r in records[:20]]
    assert single == expected[:20].tolist()
    batch = client.post("/predict/batch", json={"records": records})
    assert batch.status_code == 200
    body = batch.json()
    assert body["count"] == len(records)
    assert [p["probability"] for p in body["predictions"]] == expected.tolist()
    assert [p["label"] for p in body["predictions"]] == (expected >= trained.model.threshold).astype(int).tolist()


def test_single_row_path_is_the_batch_path_bit_for_bit(trained) -> None:
    # /predict builds one row with Python floats and calls the booster directly; the batch
    # job builds a matrix with numpy and calls inplace_predict. Same rows, same probabilities.
    model = trained.model
    frames = [trained.test, model_records_with_gaps(trained.test)]
    for frame in frames:
        matrix = model.predict_input(frame)
        expected = model.predict_matrix(matrix)
        for i, record in enumerate(as_json_records(frame)):
            row = model.row(record)
            assert row.tobytes() == matrix[i : i + 1].tobytes()
            assert model.predict_row(row) == expected[i]
    # Anything but one float32 row goes through predict_matrix.
    matrix = model.predict_input(trained.test.iloc[:3])
    assert model.predict_row(matrix[:1].astype(np.float64)) == model.predict_matrix(matrix)[0]
    assert model.predict_row(np.asfortranarray(matrix[1:2])) == model.predict_matrix(matrix)[1]


def model_records_with_gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """The records with their optional fields blanked in turn, and unknown places."""
    out = frame.copy()
    optional = [f.name for f in RECORD_FIELDS if f.optional]
    for k, name in enumerate(optional):
        out.loc[out.index[k :: len(optional)], name] = None
    out.loc[out.index[::7], "com"] = "98899"
    out.loc[out.index[::11], "vma"] = -1
    return out


def test_predict_explain(client: TestClient, trained) -> None:
    record = as_json_records(trained.test.iloc[[3]])[0]
    body = client.post("/predict?explain=true&top=8", json=record).json()
    factors = body["explanation"]["factors"]
    assert len(factors) == 8
    sizes = [abs(f["contribution"]) for f in factors]
    assert sizes == sorted(sizes, reverse=True)
    assert all(f["direction"] == ("increases" if f["contribution"] >= 0 else "decreases") for f in factors)
    assert all(f["label_en"] != f["feature"] for f in factors)
    # Every contribution plus the bias gives the log-odds of the probability.
    model = trained.model
    contribs = model.contributions(model.row(record))
    assert body["explanation"]["base_log_odds"] == pytest.approx(float(contribs[-1]))
    p = body["probability"]
    assert float(contribs.sum()) == pytest.approx(math.log(p / (1 - p)), abs=1e-4)
    coded = client.post("/predict?explain=true&top=50", json={**record, "lum": 3}).json()
    lum = [f for f in coded["explanation"]["factors"] if f["feature"] == "lum"]
    if lum:
        assert lum[0]["value"] == 3 and lum[0]["value_label"] == FIELDS["lum"].labels()["3"]


def test_feature_labels_cover_the_model() -> None:
    for name in FEATURE_COLUMNS:
        fr, en = feature_label(name)
        assert fr != name and en != name, name
    assert value_label("weekday", 0, {}) == "Lundi (Monday)"
    assert value_label("weekend", 1, {}) == "Oui (yes)"
    assert value_label("dep_te", 0.3, {"dep": "2A"}) == "Département 2A (department)"
    assert str(value_label("com_te", 0.3, {"com": None})).startswith("Commune inconnue")
    assert value_label("com_accidents", 4, {"com": "75056"}) == "Commune 75056 (municipality)"
    assert value_label("lum", None, {}) is None
    assert value_label("usagers_par_vehicule", 1.5, {}) is None


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"lum": 9}, "lum", "1, 2, 3, 4 or 5"),
        ({"catr": "autoroute"}, "catr", "Input should be"),
        ({"heure": 25}, "heure", "less than or equal to 23"),
        ({"heure": "midi"}, "heure", "JSON number, not str"),
        ({"heure": "12"}, "heure", "JSON number, not str"),
        ({"nb_pietons": True}, "nb_pietons", "JSON number, not bool"),
        ({"heure": 12.5}, "heure", "fractional part"),
        ({"heure": None}, "heure", "valid integer"),
        ({"nb_vehicules": -1}, "nb_vehicules", "greater than or equal to 0"),
        ({"dep": "00"}, "dep", "'2A'"),
        ({"com": "7505"}, "com", "pattern"),
        ({"speed": 90}, "speed", "Extra inputs are not permitted"),
        ({"lat": 123.0}, "lat", "less than or equal to 90"),
    ],
)
def test_predict_rejects_bad_fields(client: TestClient, body: dict[str, Any], field: str, needle: str) -> None:
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert errors[0]["loc"] == ["body", field]
    assert needle in errors[0]["msg"]


def test_predict_reports_every_bad_field(client: TestClient) -> None:
    # A non-number in a numeric field is reported with the record's other errors.
    response = client.post("/predict", json={"heure": "12", "lum": 9, "nb_pietons": True, "speed": 1})
    assert response.status_code == 422
    errors = {tuple(e["loc"]): e for e in response.json()["detail"]}
    assert set(errors) == {("body", "heure"), ("body", "lum"), ("body", "nb_pietons"), ("body", "speed")}
    assert errors[("body", "heure")]["type"] == "number_type"
    assert errors[("body", "heure")]["msg"] == "Input should be a JSON number, not str"
    assert errors[("body", "nb_pietons")]["msg"] == "Input should be a JSON number, not bool"
    assert errors[("body", "lum")]["type"] == "literal_error"
    batch = client.post("/predict/batch", json={"records": [{}, {"heure": "12"}]})
    assert batch.status_code == 422
    assert batch.json()["detail"][0]["loc"] == ["body", "records", 1, "heure"]
    assert batch.json()["detail"][0]["type"] == "number_type"
    # Strings stay welcome where the schema says string.
    assert client.post("/predict", json={"dep": "2A", "com": "2A004"}).status_code == 200


def test_predict_accepts_integral_floats(client: TestClient) -> None:
    # JSON Schema counts 2.0 as an integer; pandas-built clients send it for nullable ints.
    as_float = client.post("/predict", json={"heure": 17.0, "age_min": 30.0, "lat": 45})
    as_int = client.post("/predict", json={"heure": 17, "age_min": 30, "lat": 45.0})
    assert as_float.status_code == as_int.status_code == 200
    assert as_float.json()["probability"] == as_int.json()["probability"]


def test_predict_rejects_malformed_bodies(client: TestClient) -> None:
    malformed = client.post("/predict", content=b'{"lum": 1,', headers={"Content-Type": "application/json"})
    assert malformed.status_code == 422
    assert malformed.json()["detail"][0]["type"] == "json_invalid"
    bodies: list[Any] = [[], "text", 3]
    for body in bodies:
        response = client.post("/predict", json=body)
        assert response.status_code == 422
    assert client.post("/predict", content=b"lum=1", headers={"Content-Type": "text/plain"}).status_code == 422
    assert client.post("/predict?top=0", json={}).status_code == 422


def test_batch_limits(client: TestClient) -> None:
    empty = client.post("/predict/batch", json={"records": []})
    assert empty.status_code == 422
    assert empty.json()["detail"][0]["loc"] == ["body", "records"]
    assert "at least 1" in empty.json()["detail"][0]["msg"]
    too_many = client.post("/predict/batch", json={"records": [{}] * 1001})
    assert too_many.status_code == 422
    assert "at most 1000" in too_many.json()["detail"][0]["msg"]
    one_bad = client.post("/predict/batch", json={"records": [{}, {"lum": 0}]})
    assert one_bad.status_code == 422
    assert one_bad.json()["detail"][0]["loc"] == ["body", "records", 1, "lum"]
    assert client.post("/predict/batch", json={"rows": [{}]}).status_code == 422


def test_unexpected_errors_carry_no_traceback(registry, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(make_settings(monkeypatch, registry.tracking_uri))
    with TestClient(app, raise_server_exceptions=False) as c:
        wait_ready(c)
        model = app.state.holder.current.model

        def boom(row: np.ndarray) -> np.ndarray:
            raise RuntimeError("secret internals\nTraceback (most recent call last)")

        monkeypatch.setattr(model, "predict_matrix", boom)
        monkeypatch.setattr(model, "predict_row", boom)
        response = c.post("/predict", json={})
        assert response.status_code == 500
        assert response.json() == {"detail": "internal error"}
        metrics = c.get("/metrics").text
        assert 'api_requests_total{method="POST",route="/predict",status="500"} 1.0' in metrics


# --- /admin/reload


def test_admin_key(client: TestClient, registry, monkeypatch: pytest.MonkeyPatch) -> None:
    assert client.post("/admin/reload").status_code == 401
    wrong = client.post("/admin/reload", headers={"X-API-Key": "nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "APIKey"
    ok = client.post("/admin/reload", headers={"X-API-Key": API_KEY})
    assert ok.status_code == 200
    assert ok.json()["status"] == "reloaded"
    assert ok.json()["previous"]["version"] == ok.json()["model"]["version"] == registry.version
    monkeypatch.delenv("API_KEY")
    unset = Settings(_env_file=None, MLFLOW_TRACKING_URI=registry.tracking_uri)
    with TestClient(create_app(unset)) as c:
        refused = c.post("/admin/reload", headers={"X-API-Key": API_KEY})
        assert refused.status_code == 503
        assert "API_KEY" in refused.json()["detail"]


@pytest.fixture
def two_versions(registry, tmp_path: Path) -> Iterator[tuple[str, MlflowClient]]:
    """A model name whose v1 is the registry's model and v2 a copy with a corrupt booster."""
    mlflow.set_tracking_uri(registry.tracking_uri)
    mlflow.set_registry_uri(registry.tracking_uri)
    good = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{registry.model_name}/{registry.version}", dst_path=str(tmp_path / "good")
        )
    )
    bad = Path(shutil.copytree(good, tmp_path / "bad"))
    (bad / "artifacts" / "model" / "model.ubj").write_bytes(b"not a booster")  # the pyfunc's model folder
    client = MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)
    name = f"reload-{tmp_path.name}"
    client.create_registered_model(name)
    for folder in (good, bad):
        client.create_model_version(name, source=folder.as_uri())
    client.set_registered_model_alias(name, "champion", "1")
    yield name, client
    client.delete_registered_model(name)


def test_reload_onto_a_broken_model_keeps_the_old_one(
    two_versions: tuple[str, MlflowClient], registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, registry_client = two_versions
    settings = make_settings(monkeypatch, registry.tracking_uri, MODEL_NAME=name)
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        before = c.post("/predict", json={}).json()
        assert before["model"]["version"] == "1"
        registry_client.set_registered_model_alias(name, "champion", "2")
        failed = c.post("/admin/reload", headers={"X-API-Key": API_KEY})
        assert failed.status_code == 503
        detail = failed.json()["detail"]
        assert "still serving version 1" in detail
        assert "\n" not in detail and "Stack trace" not in detail and "[bt]" not in detail
        after = c.post("/predict", json={})
        assert after.status_code == 200
        assert after.json()["model"]["version"] == "1"
        assert after.json()["probability"] == before["probability"]
        assert c.get("/ready").json()["model"]["version"] == "1"
        registry_client.set_registered_model_alias(name, "champion", "1")
        assert c.post("/admin/reload", headers={"X-API-Key": API_KEY}).status_code == 200
        metrics = c.get("/metrics").text
        assert 'api_model_reloads_total{outcome="failed"} 1.0' in metrics
        assert 'api_model_reloads_total{outcome="reloaded"} 1.0' in metrics


# --- /metrics


def test_metrics_by_route_template(client: TestClient) -> None:
    client.post("/predict", json={})
    client.get("/score/file/0123456789abcdef0123456789abcdef")
    client.get("/no/such/path")
    text = client.get("/metrics").text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
    assert 'api_requests_total{method="POST",route="/predict",status="200"}' in text
    assert 'route="/score/file/{job_id}",status="404"' in text
    assert 'route="unmatched",status="404"' in text
    assert "0123456789abcdef" not in text
    assert 'api_request_duration_seconds_bucket{le="0.005",route="/predict"}' in text
    assert 'api_predictions_total{label="' in text


# --- uploads: limits and types (no scoring needed)


@pytest.fixture(scope="module")
def small_upload_client(registry) -> Iterator[TestClient]:
    """One app with tiny upload limits for the module (its tests only read or count)."""
    # The environment is restored as soon as the settings are read: an app another test
    # creates later must not inherit the tiny limits.
    with pytest.MonkeyPatch.context() as mp:
        settings = make_settings(mp, registry.tracking_uri, API_MAX_UPLOAD_MB="0.01", API_MAX_EXPANDED_MB="0.2")
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        yield c


def metric(client: TestClient, sample: str) -> float:
    """The value of one sample of /metrics, 0 when it has none yet."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{sample} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_upload_too_large(small_upload_client: TestClient) -> None:
    refused = 'api_requests_total{method="POST",route="/score/file",status="413"}'
    before = metric(small_upload_client, refused)  # the client is shared: count this test's own
    big = b"an;mois\n" + b"2021;6\n" * 3000
    declared = small_upload_client.post("/score/file", files={"file": ("big.csv", big, "text/csv")})
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:
        # No Content-Length: the limit is enforced while the body streams in.
        for _ in range(100):
            yield b"x" * 1024

    streamed = small_upload_client.post(
        "/score/file", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert streamed.status_code == 413
    batch = small_upload_client.post("/predict/batch", json={"records": [{"lum": 1}] * 2000})
    assert batch.status_code == 413
    assert metric(small_upload_client, refused) == before + 2


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("photo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
        ("records.csv", b"an;mois\x00\x00\x01\x02"),
        ("sheet.xlsx", b"PK\x03\x04 pretend workbook"),
        ("notes.json", b'{"records": []}'),
    ],
)
def test_upload_not_csv_or_zip(client: TestClient, name: str, content: bytes) -> None:
    response = client.post("/score/file", files={"file": (name, content, "application/octet-stream")})
    assert response.status_code == 415
    assert name in response.json()["detail"]


def test_upload_missing_file(client: TestClient) -> None:
    response = client.post("/score/file", files={"other": ("a.csv", b"x", "text/csv")})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "file"]


# --- job store


def test_job_store_keeps_a_disk_budget_least_recently_used_first(tmp_path: Path) -> None:
    one = tmp_path / "one.parquet"
    pd.DataFrame({"x": [1, 2, 3]}).to_parquet(one)
    store = JobStore(max_bytes=2 * one.stat().st_size)  # room for two jobs
    jobs = []
    for _ in range(3):
        job_id, folder = store.new_folder()
        parquet = folder / "scored.parquet"
        pd.DataFrame({"x": [1, 2, 3]}).to_parquet(parquet)
        job = Job(job_id, folder, parquet, folder / "scored.rejects.csv", {}, [], 0, 3, {})
        jobs.append(job)
        store.add(job)
        if len(jobs) == 2:
            assert store.get(jobs[0].job_id) is jobs[0]  # now the most recent
    assert store.get(jobs[1].job_id) is None and not jobs[1].folder.exists()
    assert store.get(jobs[0].job_id) is jobs[0]
    assert pd.read_csv(jobs[2].csv())["x"].tolist() == [1, 2, 3]
    assert jobs[2].page(2, 2)["x"].tolist() == [3]
    root = store.root
    assert root is not None and root.exists()
    store.close()
    assert not root.exists() and store.get(jobs[2].job_id) is None


def zip_of(folder: Path) -> bytes:
    """The four raw tables of one year, zipped as data.gouv.fr users would."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"baac/{path.name}")
    return buffer.getvalue()


def flat_csv(frame: pd.DataFrame) -> bytes:
    """Flat accident records as a CSV upload."""
    return frame[[ID_COLUMN, *RECORD_COLUMNS]].to_csv(index=False).encode()


# --- /score/file


@pytest.fixture(scope="module")
def records_csv(trained) -> bytes:
    return flat_csv(trained.test)


def test_score_csv_matches_the_batch_job(client: TestClient, trained, records_csv: bytes, tmp_path: Path) -> None:
    from pipeline.batch.run import score_to_files

    response = client.post("/score/file?page_size=50", files={"file": ("accidents 2021.csv", records_csv, "text/csv")})
    assert response.status_code == 200, response.text
    body = response.json()
    n = len(trained.test)
    assert body["rows_total"] == n and body["rejects_total"] == 0 and body["rejects"] == []
    assert body["page"] == 1 and body["page_size"] == 50 and body["pages"] == math.ceil(n / 50)
    assert body["summary"]["counts"]["scored"] == n
    assert body["summary"]["input"]["files"][0]["path"] == "accidents_2021.csv"
    first = body["rows"][0]
    assert {"id", "proba", "label", "lat", "long", "dep", "lum"} <= first.keys()
    assert str(first["id"]) == str(trained.test[ID_COLUMN].iloc[0])
    # Same probabilities, bit for bit, as the model on the frame and as the batch job's code.
    expected = trained.model.predict_frame(trained.test)
    assert [row["proba"] for row in body["rows"]] == expected[:50].tolist()
    local = tmp_path / "records.csv"
    local.write_bytes(records_csv)
    score_to_files([local], tmp_path / "batch.parquet", trained.model, with_features=True)
    batch_job = pd.read_parquet(tmp_path / "batch.parquet")
    assert [row["proba"] for row in body["rows"]] == batch_job["proba"].iloc[:50].tolist()
    api_records = as_json_records(trained.test.iloc[:10])
    single = [client.post("/predict", json=r).json()["probability"] for r in api_records]
    assert single == batch_job["proba"].iloc[:10].tolist()

    job = body["job_id"]
    page2 = client.get(f"/score/file/{job}?page=2&page_size=50").json()
    assert page2["page"] == 2 and [row["proba"] for row in page2["rows"]] == expected[50:100].tolist()
    downloads = body["downloads"]
    assert downloads["parquet"] == f"/score/jobs/{job}/scored.parquet"
    parquet = client.get(downloads["parquet"])
    assert parquet.status_code == 200
    frame = pd.read_parquet(io.BytesIO(parquet.content))
    assert frame["proba"].tolist() == expected.tolist()
    csv_download = client.get(downloads["csv"])
    assert csv_download.headers["content-type"].startswith("text/csv")
    assert len(pd.read_csv(io.BytesIO(csv_download.content))) == n
    rejects = client.get(downloads["rejects_csv"])
    assert rejects.status_code == 200 and rejects.text.startswith("id,line,column,value,reason")
    assert 'api_predictions_total{label="' in client.get("/metrics").text


def test_score_zip_of_raw_tables(client: TestClient, extracts: Path, records) -> None:
    response = client.post(
        "/score/file", files={"file": ("baac-2021.zip", zip_of(extracts / "2021"), "application/zip")}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["summary"]["input"]["kind"] == "raw"
    assert body["rows_total"] + body["summary"]["counts"]["rejected"] == len(records[2021])
    assert all(not f["path"].startswith("/") for f in body["summary"]["input"]["files"])


def test_score_rejects_and_bad_content(client: TestClient, trained, extracts: Path) -> None:
    frame = trained.test.iloc[:60].copy()
    frame["lum"] = frame["lum"].astype("Int64")
    frame.iloc[1, frame.columns.get_loc("lum")] = 99
    bad = flat_csv(frame)
    refused = client.post("/score/file", files={"file": ("records.csv", bad, "text/csv")})
    assert refused.status_code == 422
    detail = refused.json()
    assert detail["file"] == "records.csv" and detail["column"] == "lum" and detail["rows"] == [3]
    assert "line 3" in detail["detail"] and "/tmp" not in detail["detail"] and "\n" not in detail["detail"]
    tolerated = client.post("/score/file?max_reject_rate=0.5", files={"file": ("records.csv", bad, "text/csv")})
    assert tolerated.status_code == 200
    body = tolerated.json()
    assert body["rows_total"] == 59 and body["rejects_total"] == 1
    assert body["rejects"][0]["line"] == 3 and body["rejects"][0]["column"] == "lum"
    for name, content in (
        ("empty.csv", b""),
        ("header-only.csv", ",".join(RECORD_COLUMNS).encode() + b"\n"),
        ("wrong.csv", b"a;b;c\n1;2;3\n"),
        ("broken.zip", b"PK\x03\x04 this is no zip"),
        ("lieux-2021.csv", (extracts / "2021" / "lieux-2021.csv").read_bytes()),
    ):
        response = client.post("/score/file", files={"file": (name, content, "text/csv")})
        assert response.status_code == 422, (name, response.text)
        assert "Traceback" not in response.text and "/tmp/" not in response.text


def test_score_gzipped_csv(client: TestClient, trained, records_csv: bytes) -> None:
    response = client.post(
        "/score/file", files={"file": ("records.csv.gz", gzip.compress(records_csv), "application/gzip")}
    )
    assert response.status_code == 200, response.text
    rows = response.json()["rows"]
    assert [row["proba"] for row in rows] == trained.model.predict_frame(trained.test.iloc[: len(rows)]).tolist()


def bomb(trained, rows: int = 3_000) -> bytes:
    """One real record repeated: a CSV that gzip shrinks to a few KB and that expands past 200 KB."""
    return flat_csv(trained.test.iloc[[0] * rows])


@pytest.mark.parametrize("kind", ["zip", "gz", "gz in zip"])
def test_score_decompression_bombs_are_refused(small_upload_client: TestClient, trained, kind: str) -> None:
    """Counted while decompressing, whatever the headers say: 413 naming the setting."""
    content = bomb(trained)
    buffer = io.BytesIO()
    if kind == "gz":
        upload = ("bomb.csv.gz", gzip.compress(content, 9))
    else:
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            if kind == "zip":
                zf.writestr("records.csv", content)
            else:
                zf.writestr("records.csv.gz", gzip.compress(content, 9))
        upload = ("bomb.zip", buffer.getvalue())
    assert len(upload[1]) < 10_000  # under the upload limit of the small client
    response = small_upload_client.post("/score/file", files={"file": (*upload, "application/octet-stream")})
    assert response.status_code == 413, response.text
    detail = response.json()["detail"]
    assert "once decompressed" in detail and "API_MAX_EXPANDED_MB" in detail


def test_pages_read_only_their_row_groups(client: TestClient, trained, tmp_path: Path) -> None:
    """A page spanning two row groups, the last partial page, and a page past the end."""
    from pipeline.batch.outputs import ROW_GROUP_ROWS

    frame = pd.DataFrame({"x": np.arange(2 * ROW_GROUP_ROWS + 5)})
    parquet = tmp_path / "scored.parquet"
    frame.to_parquet(parquet, row_group_size=ROW_GROUP_ROWS)
    job = Job("j", tmp_path, parquet, tmp_path / "scored.rejects.csv", {}, [], 0, len(frame), {})
    page_size = 7
    spanning = ROW_GROUP_ROWS // page_size + 1  # the page holding row ROW_GROUP_ROWS
    rows = job.page(spanning, page_size)["x"].tolist()
    assert rows == list(range((spanning - 1) * page_size, spanning * page_size))
    assert job.page(math.ceil(len(frame) / 1000), 1000)["x"].tolist() == list(range(2 * ROW_GROUP_ROWS, len(frame)))
    assert job.page(10_000, 1000).empty


def test_unknown_jobs(client: TestClient) -> None:
    job = "0" * 32
    for path in (
        f"/score/file/{job}",
        *(f"/score/jobs/{job}/{name}" for name in ("scored.parquet", "scored.csv", "rejects.csv")),
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "no scoring job" in response.json()["detail"]
