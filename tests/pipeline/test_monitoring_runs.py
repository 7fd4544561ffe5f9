"""Every batch scoring is a scoring run in MLflow: the command line and the DVC stage (real SQLite store)."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from pipeline.batch import cli, loading
from pipeline.batch.cli import main
from pipeline.batch.monitor import Monitor
from pipeline.cli import EXIT_INPUT
from pipeline.model import load_model
from pipeline.monitoring.tracking import download_output, get_scoring_run, list_scoring_runs
from pipeline.records import RECORD_FIELDS


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI looks the model up and logs its run in this process's threads (as the API does), not
    from its two spawned processes: the same model, record and files, without the seconds each
    process spends importing MLflow. The processes are exercised by the slow tests: the
    ``cli-processes`` run below, the failure test at the end of this file, and test_score's."""
    configured = cli.monitor_from_settings

    def without_process(*args: str | None, **kwargs: object) -> Monitor:
        monitor = configured(*args, **kwargs)  # type: ignore[arg-type]
        monitor.background = False
        return monitor

    monkeypatch.setattr(cli, "monitor_from_settings", without_process)
    monkeypatch.setattr(loading, "is_mlflow_uri", lambda uri: False)  # load_model resolves it in the thread


def test_registered_model_carries_its_training_profile(registry) -> None:
    model = load_model(registry.champion_uri, registry.tracking_uri)
    assert model.profile is not None
    assert set(model.profile.fields) == {f.name for f in RECORD_FIELDS}
    assert model.profile.rows == model.info["rows"]["valid"]  # the validation rows


@pytest.mark.parametrize(
    ("source", "process"),
    [
        # The job as it runs: model lookup and run logging in its two spawned processes.
        pytest.param("cli", True, marks=pytest.mark.slow, id="cli-processes"),
        pytest.param("cli", False, id="cli"),
        pytest.param("dvc", False, id="dvc"),
    ],
)
def test_cli_and_dvc_runs_are_recorded_with_drift_per_field(
    registry, store: str, extracts: Path, tmp_path: Path, source: str, process: bool, request: pytest.FixtureRequest
) -> None:
    if not process:
        request.getfixturevalue("in_process")
    out = tmp_path / "scores.parquet"
    args = [str(extracts / "2021"), "--output", str(out), "--n-jobs", "1"]
    assert main([*args, "--source", source] if source == "dvc" else args) == 0
    page = list_scoring_runs(store, tracking_uri=registry.tracking_uri)
    assert len(page.runs) == 1
    run = page.runs[0]
    assert run.source == source
    assert run.model_version == registry.version
    assert run.input_name == "2021"
    assert {f"psi.{f.name}" for f in RECORD_FIELDS} | {"psi.proba"} <= set(run.metrics)
    scored = pd.read_parquet(out)
    assert run.metrics["rows.scored"] == len(scored)
    stored = get_scoring_run(run.run_id, tracking_uri=registry.tracking_uri)
    assert {d.field for d in stored.record.drift.fields} == {f.name for f in RECORD_FIELDS}
    assert stored.record.realized is not None  # the raw tables carry the outcome
    assert stored.record.realized.n == len(scored)
    outcome = json.loads(out.with_name("scores.summary.json").read_text())["outcome"]
    assert stored.record.realized.confusion == outcome["confusion"]  # the summary's numbers, the same run
    assert stored.record.realized.f1 == outcome["metrics"]["f1"]
    copy = download_output(run.run_id, "scored", tmp_path / "copy", tracking_uri=registry.tracking_uri)
    assert copy.read_bytes() == out.read_bytes()
    assert sorted(stored.outputs) == ["rejects", "scored", "summary"]


@pytest.mark.usefixtures("in_process")
def test_no_record_logs_nothing(registry, store: str, extracts: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    assert main([str(extracts / "2021"), "-o", str(out), "--n-jobs", "1", "--no-record"]) == 0
    assert out.exists()
    assert list_scoring_runs(store, tracking_uri=registry.tracking_uri).runs == ()


@pytest.mark.usefixtures("in_process")
def test_a_failed_log_is_a_warning_not_a_failed_scoring(
    registry, store: str, extracts: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = MlflowClient(registry.tracking_uri)
    client.delete_experiment(client.create_experiment(store))  # a deleted experiment refuses new runs
    out = tmp_path / "scores.parquet"
    assert main([str(extracts / "2021"), "-o", str(out), "--n-jobs", "1"]) == 0
    assert out.exists() and out.with_name("scores.summary.json").exists()
    assert "scoring run not recorded" in caplog.text


@pytest.mark.slow  # spawns the logging process (MLflow imports), then kills it
def test_bad_input_with_recording_on_stops_the_logging_process(
    registry, trained, store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad input fails as it does without recording: exit 2, one line, no output, no run; no process left."""
    empty = tmp_path / "records.csv"
    empty.write_text("")
    out = tmp_path / "out" / "scores.parquet"
    assert main([str(empty), "-o", str(out), "--n-jobs", "1", "--model", str(trained.model_dir)]) == EXIT_INPUT
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "file is empty" in errors[0], errors
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    assert multiprocessing.active_children() == []
    assert list_scoring_runs(store, tracking_uri=registry.tracking_uri).runs == ()
