"""Fixtures shared by the pipeline's tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def store(registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The registry's tracking store, with scoring runs in an experiment of this test's own."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
    monkeypatch.setenv("MONITOR_EXPERIMENT", f"scoring-{tmp_path.name}")
    monkeypatch.setenv("MLFLOW_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    return f"scoring-{tmp_path.name}"
