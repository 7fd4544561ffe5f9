"""The serving heap is frozen out of the cyclic garbage collector once a model is loaded
(``api.services.model_holder.settle_heap``), and a reload still frees the previous model."""

from __future__ import annotations

import gc
import time
import weakref

from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from tests.api_helpers import wait_ready

API_KEY = "a-heap-test-admin-key-of-24+"


def test_the_heap_is_frozen_and_a_reload_frees_the_old_model(registry) -> None:
    settings = Settings(_env_file=None, MLFLOW_TRACKING_URI=registry.tracking_uri, API_KEY=API_KEY)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        # Everything alive after the load is out of the collector's reach: libraries, model. The
        # load publishes the model (``/ready``), then freezes the heap: wait for the freeze.
        deadline = time.monotonic() + 30
        while gc.get_freeze_count() <= 100_000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gc.get_freeze_count() > 100_000
        first = weakref.ref(client.app.state.holder.current.model)  # type: ignore[attr-defined]
        assert client.post("/admin/reload", headers={"X-API-Key": API_KEY}).status_code == 200
        gc.collect()
        assert first() is None  # unfrozen before the next freeze: the old model was freed
        assert client.post("/predict", json={}).status_code == 200
    gc.unfreeze()  # leave the test session's collector as it was
