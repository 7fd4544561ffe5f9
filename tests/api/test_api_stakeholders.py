"""What the API tells stakeholders beyond predictions: places by name, the typical accident,
calibration, slices, the seed numbers, the input limits, and documentation served offline."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app
from api.places import MAX_LIMIT, fold, official_list
from api.settings import Settings
from pipeline.metrics import SEED_PROJECT
from tests.api_helpers import wait_ready
from tests.conftest import Trained


@pytest.fixture(scope="module")
def app(registry) -> Iterator[FastAPI]:  # type: ignore[no-untyped-def]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
        mp.setenv("API_MAX_UPLOAD_MB", "12")
        yield create_app(Settings(_env_file=None))  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        wait_ready(c)  # the model loads in the background
        yield c


def test_the_official_list_has_the_arrondissements_baac_uses() -> None:
    places = {p["code"]: p for p in official_list()}
    assert len(places) == 35014
    assert places["69383"] == {
        "code": "69383",
        "nom": "Lyon 3e Arrondissement",
        "departement": "69",
        "population": places["69383"]["population"],
        "type": "arrondissement-municipal",
    }
    assert places["75116"]["nom"] == "Paris 16e Arrondissement"
    assert places["13208"]["nom"].startswith("Marseille 8e")
    assert places["2A004"]["departement"] == "2A"
    assert fold("Saint-Étienne") == "saint etienne"


def test_places_by_name_with_training_centres(client: TestClient, records: dict[int, pd.DataFrame]) -> None:
    body = client.get("/places", params={"q": "lyon 3"}).json()
    assert body["places"][0]["code"] == "69383"
    assert body["places"][0]["name"] == "Lyon 3e Arrondissement" and body["places"][0]["dep"] == "69"
    train = records[2020]
    top = train["com"].value_counts()
    com = str(top.index[0])
    found = client.get("/places", params={"q": com}).json()["places"]
    place = next(p for p in found if p["code"] == com)
    local = train[train["com"] == com]
    assert place["accidents"] == len(local)
    assert place["lat"] == pytest.approx(local["lat"].median(), abs=1e-5)
    assert place["long"] == pytest.approx(local["long"].median(), abs=1e-5)
    # Without a query: most training accidents first.
    first = client.get("/places", params={"limit": 3}).json()
    assert first["places"][0]["code"] == com and len(first["places"]) == 3
    assert first["total"] == 35014
    accents = client.get("/places", params={"q": "saint etienne", "limit": 5}).json()["places"]
    assert any(p["name"] == "Saint-Étienne" for p in accents)


def test_places_bounds_are_4xx(client: TestClient) -> None:
    assert client.get("/places", params={"limit": MAX_LIMIT + 1}).status_code == 422
    assert client.get("/places", params={"limit": 0}).status_code == 422
    assert client.get("/places", params={"q": "x" * 101}).status_code == 422
    assert client.get("/places", params={"q": "zzzzqqq"}).json() == {"query": "zzzzqqq", "total": 0, "places": []}


def test_model_serves_seed_limits_and_typical_accident(
    client: TestClient, records: dict[int, pd.DataFrame], trained: Trained
) -> None:
    info = client.get("/model").json()
    assert info["seed_project"] == SEED_PROJECT
    assert info["limits"] == {
        "max_upload_bytes": 12 * 1024 * 1024,
        "max_batch": 1000,
        "max_json_bytes": 2 * 1024 * 1024,
        "max_expanded_bytes": 1000 * 1024 * 1024,
        "max_upload_rows": 1_000_000,
        "max_concurrent_jobs": 2,
    }
    scenario = info["scenario"]
    train = records[2020]
    row = train[train["Num_Acc"].astype(str) == scenario["accident_id"]].iloc[0]
    assert scenario["com"] == row["com"] == scenario["record"]["com"]
    assert scenario["place_name"]
    assert scenario["unknown_fields"] == 0
    assert info["training"]["rows"] == {
        "fit": trained.metrics["train"]["n"],
        "valid": trained.metrics["valid"]["n"],
        "final_model": len(train),
    }
    # The typical accident is a valid record: its prediction is not a made-up default.
    predicted = client.post("/predict", json=scenario["record"], params={"explain": "true"}).json()
    factors = predicted["explanation"]["factors"]
    unknown = {f["feature"] for f in factors if f["value"] is None}
    # The speed limit outside built-up areas is empty by design for an accident inside one.
    assert unknown <= {"hors_agglo_vma"}
    assert all(f["value_label"] != "Commune inconnue" for f in factors)


def test_evaluation_serves_calibration_and_slices(client: TestClient, trained: Trained) -> None:
    ev = client.get("/model/evaluation").json()
    curves = {c["split"]: c for c in ev["calibration"]}
    assert set(curves) == {"valid", "test"}
    assert curves["test"]["ece"] == trained.metrics["test"]["ece"]
    assert sum(b["n"] for b in curves["test"]["bins"]) == trained.metrics["test"]["n"]
    slices = ev["slices"]
    assert slices["flagged"] == sum(s["flagged"] for s in slices["slices"])
    assert {s["group"] for s in slices["slices"]} >= {"Built-up area", "Road category", "Light", "Road users"}


def test_docs_and_redoc_load_nothing_from_elsewhere(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        urls = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert urls and all(u.startswith("/") for u in urls), urls
        for url in urls:
            if not url.endswith(".json"):
                assert client.get(url).status_code == 200, url


def test_a_missing_commune_list_leaves_places_empty_not_broken(tmp_path: Path) -> None:
    official_list.cache_clear()
    try:
        assert official_list(tmp_path / "absent.json.gz") == ()
    finally:
        official_list.cache_clear()
