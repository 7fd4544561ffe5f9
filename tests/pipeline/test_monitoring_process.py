"""Recording a scoring run starts no interpreter of its own: it logs from the model lookup's MLflow process."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.batch import loading
from pipeline.batch.cli import main
from pipeline.monitoring.profile import PROFILE_FILE
from pipeline.monitoring.tracking import list_scoring_runs


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[loading.MlflowProcess]:
    """Every MLflow process the job starts."""
    processes: list[loading.MlflowProcess] = []
    init = loading.MlflowProcess.__init__

    def spy(self: loading.MlflowProcess, stack: contextlib.ExitStack) -> None:
        init(self, stack)
        processes.append(self)

    monkeypatch.setattr(loading.MlflowProcess, "__init__", spy)
    return processes


def score(extracts: Path, out: Path, *args: Any) -> int:
    return main([str(extracts / "2021"), "-o", str(out), "--n-jobs", "1", *map(str, args)])


@pytest.mark.slow  # a spawned MLflow process
def test_the_lookup_process_also_logs_the_run(
    registry, store: str, started: list[Any], extracts: Path, tmp_path: Path
) -> None:
    assert score(extracts, tmp_path / "scores.parquet") == 0
    assert len(started) == 1  # the lookup's: no second interpreter to record the run
    runs = list_scoring_runs(store, tracking_uri=registry.tracking_uri).runs
    assert len(runs) == 1 and runs[0].model_version == registry.version


def test_a_model_without_profile_starts_nothing_to_record(
    store: str, trained, started: list[Any], extracts: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A model folder saved without its training profile: nothing to monitor, no MLflow process."""
    assert not (trained.model_dir / PROFILE_FILE).exists()
    assert score(extracts, tmp_path / "scores.parquet", "--model", trained.model_dir) == 0
    assert started == []
    assert "no training profile" in caplog.text
    assert list_scoring_runs(store).runs == ()


@pytest.mark.slow  # a spawned MLflow process
def test_a_model_folder_with_profile_logs_from_one_process(
    registry, store: str, trained, started: list[Any], extracts: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(trained.model_dir, folder)
    (folder / PROFILE_FILE).write_text(trained.model.profile.to_json(), encoding="utf-8")
    assert score(extracts, tmp_path / "scores.parquet", "--model", folder) == 0
    assert len(started) == 1  # started with the first counted block, not with the job
    runs = list_scoring_runs(store, tracking_uri=registry.tracking_uri).runs
    assert len(runs) == 1 and runs[0].source == "cli"


def test_recording_off_starts_no_process_for_a_model_folder(
    store: str, trained, started: list[Any], extracts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(trained.model_dir, folder)
    (folder / PROFILE_FILE).write_text(trained.model.profile.to_json(), encoding="utf-8")
    monkeypatch.setenv("MONITOR_RECORD", "false")
    assert score(extracts, tmp_path / "scores.parquet", "--model", folder) == 0
    assert started == []
    assert list_scoring_runs(store).runs == ()
