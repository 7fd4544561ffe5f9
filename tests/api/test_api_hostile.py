"""Hostile and careless requests, through the app's lifespan (TestClient): every one gets a
4xx whose body is valid, small JSON, and the service keeps answering."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.errors import MAX_TEXT, bounded
from api.log_filters import ACCEPT_ERROR, RepeatFilter
from api.main import create_app
from api.services.admin_guard import AdminGuard
from api.settings import Settings
from tests.api_helpers import wait_error, wait_ready

API_KEY = "hostile-test-admin-key-0123456789"
MAX_ERROR_BODY = 64 * 1024
JSON = {"Content-Type": "application/json"}


def settings_for(tracking_uri: str, **env: str) -> Settings:
    values = {"MLFLOW_TRACKING_URI": tracking_uri, "API_KEY": API_KEY, **env}
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def app(registry) -> FastAPI:
    return create_app(settings_for(registry.tracking_uri))


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        wait_ready(c)
        yield c


def strict_json(content: bytes) -> object:
    """Parse as a strict client would: no NaN/Infinity, UTF-8 only."""

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in a response")

    return json.loads(content.decode("utf-8"), parse_constant=refuse)


HOSTILE: dict[str, bytes] = {
    "nan": b'{"lat": NaN}',
    "infinity": b'{"lat": Infinity}',
    "minus_infinity": b'{"records": [{"long": -Infinity}]}',
    "float_overflow": b'{"lat": 1e400}',
    "huge_int": b'{"heure": ' + b"9" * 5000 + b"}",
    "big_int": b'{"heure": ' + b"9" * 400 + b"}",
    "lone_surrogate_value": b'{"dep": "\\ud800"}',
    "lone_surrogate_key": b'{"\\udfff": 1}',
    "surrogate_in_batch": b'{"records": [{"com": "\\ud83d"}]}',
    "deep_nesting": b"[" * 100_000 + b"]" * 100_000,
    "deep_objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "empty_records_70k": b'{"records": [' + b",".join([b"{}"] * 70_000) + b"]}",
    "scalars_500k": b'{"records": [' + b",".join([b"1"] * 500_000) + b"]}",
    "many_extra_fields": json.dumps({f"f{i}": i for i in range(50_000)}).encode(),
    "string_1mb": json.dumps({"dep": "x" * 1_000_000}).encode(),
    "not_utf8": b'{"dep": "\xff\xfe"}',
    "truncated": b'{"lum": 1,',
    "bare_string": b'"' + b"a" * 100_000 + b'"',
    "null": b"null",
}


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_json_gets_a_small_valid_4xx(client: TestClient, path: str, name: str) -> None:
    response = client.post(path, content=HOSTILE[name], headers=JSON)
    assert 400 <= response.status_code < 500, (name, response.status_code, response.text[:300])
    assert len(response.content) <= MAX_ERROR_BODY, (name, len(response.content))
    body = strict_json(response.content)
    assert isinstance(body, dict) and body["detail"]
    assert client.get("/health").status_code == 200


def test_ten_megabyte_body_is_refused_as_it_streams(client: TestClient) -> None:
    declared = client.post("/predict", content=json.dumps({"dep": "x" * 10_000_000}).encode(), headers=JSON)
    assert declared.status_code == 413
    assert "API_MAX_JSON_MB" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"dep": "'
        for _ in range(10):
            yield b"x" * 1_000_000
        yield b'"}'

    streamed = client.post("/predict/batch", content=chunks(), headers=JSON)
    assert streamed.status_code == 413


def test_too_many_records_names_the_limit(client: TestClient) -> None:
    # Counted from the bytes, before parsing: 1001 records need 1003 objects and arrays.
    objects = client.post("/predict/batch", json={"records": [{"lum": 1}] * 1001})
    assert objects.status_code == 422
    error = objects.json()["detail"][0]
    assert error["type"] == "too_long" and "API_MAX_BATCH" in error["msg"] and "1003 JSON objects" in error["msg"]
    # Counted after parsing, before validation.
    scalars = client.post("/predict/batch", json={"records": [1] * 1001})
    assert scalars.status_code == 422
    error = scalars.json()["detail"][0]
    assert error["loc"] == ["body", "records"] and "at most 1000 items (API_MAX_BATCH), not 1001" in error["msg"]


def test_error_list_and_echoes_are_bounded(client: TestClient) -> None:
    records = [{"lum": 9, "heure": "x" * 1000, "extra": "y" * 1000} for _ in range(1000)]
    response = client.post("/predict/batch", json={"records": records})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert len(detail) == 51  # API_MAX_ERRORS, then the count of the others
    assert detail[-1]["type"] == "too_many_errors" and "2950 more errors" in detail[-1]["msg"]
    assert len(response.content) < MAX_ERROR_BODY
    assert all(len(json.dumps(e["input"])) < 4 * MAX_TEXT for e in detail[:-1])


def test_hostile_values_still_name_the_field(client: TestClient) -> None:
    nan = client.post("/predict", content=b'{"lat": NaN}', headers=JSON).json()["detail"][0]
    assert nan["type"] == "json_invalid" and "NaN" in nan["ctx"]["error"]
    overflow = client.post("/predict", content=b'{"lat": 1e400}', headers=JSON).json()["detail"][0]
    assert "out of range" in overflow["ctx"]["error"]
    surrogate = client.post("/predict", content=b'{"dep": "\\ud800"}', headers=JSON).json()["detail"][0]
    assert surrogate["loc"] == ["body", "dep"] and surrogate["input"] == "\\ud800"
    # A valid body still scores.
    assert client.post("/predict", json={"lat": 45.0, "dep": "2A"}).status_code == 200


def test_bounded_copies() -> None:
    assert bounded(float("nan")) == "nan" and bounded(float("-inf")) == "-inf"
    assert bounded("\udc00x") == "\\udc00x"
    assert len(bounded("y" * 10**6)) < MAX_TEXT + 40
    assert bounded(list(range(100)))[-1] == "... 90 more items"
    assert bounded({"a": {"b": {"c": {"d": 1}}}}) == {"a": {"b": {"c": "<object of 1 keys>"}}}
    assert bounded(10**39) == str(10**39) and bounded(10**400).endswith("(401 characters)")
    assert bounded(b"\xff") == "\ufffd"


# --- liveness never waits on MLflow


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a hung tracking server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def test_health_answers_while_the_registry_hangs(silent_server: int) -> None:
    settings = settings_for(
        f"http://127.0.0.1:{silent_server}",
        API_REGISTRY_TIMEOUT_SECONDS="1",
        API_REGISTRY_RETRIES="0",
        API_MODEL_POLL_SECONDS="0",
    )
    start = time.monotonic()
    with TestClient(create_app(settings)) as c:
        assert c.get("/health").json() == {"status": "ok"}
        ready = c.get("/ready")
        assert ready.status_code == 503 and "not loaded yet" in ready.json()["detail"]
        assert time.monotonic() - start < 5  # the app started without waiting
        reason = wait_error(c, timeout=30)
        failed_after = time.monotonic() - start
    assert failed_after < 15, failed_after  # the load gave up in seconds, not minutes
    assert "accident-severity@champion" in reason


def test_unreachable_registry_fails_in_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a closed port: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = settings_for(f"http://127.0.0.1:{port}", API_MODEL_POLL_SECONDS="0")
    start = time.monotonic()
    with TestClient(create_app(settings)) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/ready").status_code == 503
        wait_error(c, timeout=60)
        reload = c.post("/admin/reload", headers={"X-API-Key": API_KEY})
        assert reload.status_code == 503 and reload.json()["detail"].startswith("reload failed")
    assert time.monotonic() - start < 30


def test_default_registry_creates_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with TestClient(create_app(Settings(_env_file=None))) as c:
        reason = wait_error(c)
        assert "no MLflow registry at mlflow.db" in reason
        assert c.post("/predict", json={}).status_code == 503
    assert list(tmp_path.iterdir()) == []


# --- admin key


def test_short_admin_key_disables_admin(registry, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="api.main"):
        app = create_app(settings_for(registry.tracking_uri, API_KEY="short-key-of-23-chars!!"))
    assert "shorter than 24 characters" in caplog.text
    with TestClient(app) as c:
        refused = c.post("/admin/reload", headers={"X-API-Key": "short-key-of-23-chars!!"})
    assert refused.status_code == 503
    assert "shorter than 24 characters" in refused.json()["detail"]


def test_wrong_keys_are_rate_limited(client: TestClient) -> None:
    wrong = {"X-API-Key": "x" * 30}
    assert [client.post("/admin/reload", headers=wrong).status_code for _ in range(5)] == [401] * 5
    limited = client.post("/admin/reload", headers={"X-API-Key": API_KEY})  # even the right key
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert "API_ADMIN_MAX_FAILURES" in limited.json()["detail"]


def test_failure_window_expires() -> None:
    guard = AdminGuard(Settings(_env_file=None, API_KEY=API_KEY, API_ADMIN_MAX_FAILURES=2))
    for now in (0.0, 1.0):
        with pytest.raises(Exception, match="401"):
            guard.check("10.0.0.1", "wrong", now=now)
    with pytest.raises(Exception, match="429"):
        guard.check("10.0.0.1", API_KEY, now=2.0)
    guard.check("10.0.0.2", API_KEY, now=2.0)  # another client is not affected
    guard.check("10.0.0.1", API_KEY, now=301.0)  # the window moved on


# --- cross-site requests


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": "http://evil.example"}, 403),
        ({"Origin": "null"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Origin": "http://localhost:8501"}, 200),  # the dashboard (API_CORS_ORIGINS)
        ({"Origin": "http://testserver"}, 200),  # the API's own pages (/docs)
        ({"Sec-Fetch-Site": "same-origin"}, 200),
        ({}, 200),  # curl, httpx: no browser headers
    ],
)
def test_cross_site_posts_are_refused(client: TestClient, headers: dict[str, str], status: int) -> None:
    response = client.post("/predict", json={}, headers=headers)
    assert response.status_code == status, response.text
    if status == 403:
        assert "API_CORS_ORIGINS" in response.json()["detail"]


def test_cross_site_file_upload_is_refused_unread(client: TestClient) -> None:
    upload = client.post(
        "/score/file",
        files={"file": ("a.csv", b"an;mois\n2021;6\n", "text/csv")},
        headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert upload.status_code == 403
    reload = client.post("/admin/reload", headers={"Origin": "http://evil.example", "X-API-Key": API_KEY})
    assert reload.status_code == 403


# --- metrics


def test_metric_labels_are_bounded(client: TestClient) -> None:
    for i in range(30):
        client.request(f"JUNK{i}", "/predict")
        client.get(f"/random/{i}")
    text = client.get("/metrics").text
    assert "JUNK" not in text and "/random" not in text
    assert 'method="other",route="/predict",status="405"' in text and 'route="unmatched",status="404"' in text
    series = [line for line in text.splitlines() if line.startswith("api_requests_total{")]
    assert len(series) < 30


# --- logs when file descriptors run out


def test_accept_errors_are_rate_limited() -> None:
    repeat = RepeatFilter(ACCEPT_ERROR, interval=60)
    records = [
        logging.LogRecord("asyncio", logging.ERROR, __file__, 1, f"{ACCEPT_ERROR}\nsocket: x", None, None)
        for _ in range(1000)
    ]
    assert sum(repeat.filter(r) for r in records) == 1
    assert repeat.suppressed == 999
    other = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "something else", None, None)
    assert repeat.filter(other)
