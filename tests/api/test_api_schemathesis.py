"""Property-based tests of the whole OpenAPI schema: no 5xx, and every response matches it.

The schema is read from the app at import time (``schemathesis.pytest.from_fixture`` does
not run under pytest 9), and the app's model holder is pointed at the temporary registry
and loaded before the first case starts its lifespan.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from api.main import create_app
from api.services.model_holder import ModelHolder
from api.settings import Settings

# Hundreds of generated requests over every operation: part of `make test`, not of the inner loop.
pytestmark = pytest.mark.slow

API_KEY = "schemathesis-admin-key-24-chars"
MIN_CASES = 500
CALLS: Counter[str] = Counter()

app = create_app(
    Settings(
        _env_file=None,
        MLFLOW_TRACKING_URI="sqlite:///:memory:",
        API_KEY=API_KEY,
        API_MAX_BATCH=50,
        API_MODEL_POLL_SECONDS=0,
    )
)
schema = schemathesis.openapi.from_dict(app.openapi())
schema.app = app


@pytest.fixture(scope="module", autouse=True)
def serve_registry_model(registry) -> Iterator[None]:
    settings: Settings = app.state.settings
    holder = ModelHolder(settings.model_name, settings.model_alias, registry.tracking_uri)
    # Loaded here, not in the background: every case must see a ready API.
    asyncio.run(holder.load())
    app.state.holder = holder
    # The job endpoints list scoring runs from the same registry (an in-memory SQLite store has no tables).
    app.state.settings = settings.model_copy(update={"mlflow_tracking_uri": registry.tracking_uri})
    yield


@schema.parametrize()
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    CALLS[case.operation.label] += 1
    # A schema cannot say which bytes make a valid CSV, nor which opaque page tokens the
    # tracking store issued: such requests may be refused (415/422).
    opaque = case.operation.path == "/score/file" or "page_token" in (case.query or {})
    excluded = [positive_data_acceptance] if opaque else []
    case.call_and_validate(excluded_checks=excluded)


def test_enough_cases_were_generated() -> None:
    # Runs after the parametrized test (file order); the Counter lives in this process.
    if not CALLS:
        pytest.skip("run together with test_api_conforms_to_its_schema")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # xdist does not keep the file order within a worker: `make test` (serial) checks it.
        pytest.skip("counted in serial runs only")
    assert sum(CALLS.values()) >= MIN_CASES, dict(CALLS)
