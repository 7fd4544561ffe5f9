"""The API follows the registry alias by itself (API_MODEL_POLL_SECONDS), through its lifespan."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from api.main import create_app
from api.settings import Settings
from tests.api_helpers import wait_ready

POLL = "0.2"


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


@pytest.fixture
def own_registry(registry, tmp_path: Path) -> Iterator[tuple[str, MlflowClient, Path, Path]]:
    """A copy of the test registry (SQLite) with the model as v1 of a new name, plus a good
    and a corrupt copy of its files to register as later versions."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(registry.tracking_uri.removeprefix("sqlite:///"), db)
    uri = f"sqlite:///{db}"
    good = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{registry.model_name}/{registry.version}", dst_path=str(tmp_path / "good"), tracking_uri=uri
        )
    )
    bad = Path(shutil.copytree(good, tmp_path / "bad"))
    next(bad.rglob("model.ubj")).write_bytes(b"not a booster")
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("follow")
    client.create_model_version("follow", source=good.as_uri(), run_id=registry.run_id)
    client.set_registered_model_alias("follow", "champion", "1")
    yield uri, client, good, bad


def settings(uri: str) -> Settings:
    return Settings(
        _env_file=None,
        MLFLOW_TRACKING_URI=uri,
        MODEL_NAME="follow",
        API_MODEL_POLL_SECONDS=POLL,  # type: ignore[arg-type]
    )


def test_follows_the_alias_and_keeps_the_old_model_on_failure(
    own_registry: tuple[str, MlflowClient, Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    uri, client, good, bad = own_registry
    app = create_app(settings(uri))
    with caplog.at_level(logging.INFO, logger="api.services.model_holder"), TestClient(app) as c:
        assert wait_ready(c)["model"]["version"] == "1"  # type: ignore[index]
        before = c.post("/predict", json={}).json()
        # v2 cannot be loaded: v1 keeps serving, and the failure is logged once.
        client.create_model_version("follow", source=bad.as_uri())
        client.set_registered_model_alias("follow", "champion", "2")
        wait_for(lambda: "follow_failed" in c.get("/metrics").text)
        time.sleep(4 * float(POLL))  # a few more polls: the same broken version is not retried
        assert caplog.text.count("failed to load; still serving v1") == 1
        after = c.post("/predict", json={})
        assert after.status_code == 200 and after.json()["model"]["version"] == "1"
        assert after.json()["probability"] == before["probability"]
        # v3 is good: the API switches by itself.
        client.create_model_version("follow", source=good.as_uri())
        client.set_registered_model_alias("follow", "champion", "3")
        wait_for(lambda: c.get("/ready").json()["model"]["version"] == "3")
        assert c.post("/predict", json={}).json()["model"]["version"] == "3"
        assert "now serving v3" in caplog.text and "instead of v1" in caplog.text
        assert 'api_model_reloads_total{outcome="followed"} 1.0' in c.get("/metrics").text


def test_sees_a_registry_rebuilt_on_disk(
    own_registry: tuple[str, MlflowClient, Path, Path], registry, tmp_path: Path
) -> None:
    # `make clean && make repro` while the API runs: a new database file at the same path,
    # whose version 1 comes from a new run.
    uri, _, good, _ = own_registry
    db = Path(uri.removeprefix("sqlite:///"))
    app = create_app(settings(uri))
    with TestClient(app) as c:
        first = wait_ready(c)
        rebuilt = tmp_path / "rebuilt.db"
        shutil.copyfile(registry.tracking_uri.removeprefix("sqlite:///"), rebuilt)
        rebuilt_uri = f"sqlite:///{rebuilt}"
        other = MlflowClient(tracking_uri=rebuilt_uri, registry_uri=rebuilt_uri)
        new_run = other.create_run("0").info.run_id
        other.create_registered_model("follow")
        other.create_model_version("follow", source=good.as_uri(), run_id=new_run)
        other.set_registered_model_alias("follow", "champion", "1")
        db.unlink()  # a moment without a registry: the API keeps serving
        time.sleep(3 * float(POLL))
        assert c.get("/ready").status_code == 200
        assert not db.exists()  # and it did not create an empty one
        rebuilt.replace(db)
        wait_for(lambda: c.get("/ready").json()["loaded_at"] != first["loaded_at"])
        assert c.get("/ready").json()["model"]["version"] == "1"
        assert 'api_model_reloads_total{outcome="followed"} 1.0' in c.get("/metrics").text


def test_poll_off_and_reload_switches_at_once(own_registry: tuple[str, MlflowClient, Path, Path]) -> None:
    uri, client, good, _ = own_registry
    values = {"MLFLOW_TRACKING_URI": uri, "MODEL_NAME": "follow", "API_MODEL_POLL_SECONDS": "0"}
    key = "follow-test-admin-key-0123456789"
    app = create_app(Settings(_env_file=None, API_KEY=key, **values))  # type: ignore[arg-type]
    with TestClient(app) as c:
        wait_ready(c)
        client.create_model_version("follow", source=good.as_uri())
        client.set_registered_model_alias("follow", "champion", "2")
        time.sleep(0.5)
        assert c.get("/ready").json()["model"]["version"] == "1"  # poll off: no switch
        reload = c.post("/admin/reload", headers={"X-API-Key": key})
        assert reload.status_code == 200 and reload.json()["model"]["version"] == "2"
