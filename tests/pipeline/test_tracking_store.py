"""The embedded MLflow store appears whole: no reader ever sees a half-migrated file."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import pytest

from pipeline.tracking_store import ensure_store, sqlite_file

ROOT = Path(__file__).resolve().parents[2]


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_sqlite_file_of_tracking_uris(tmp_path: Path) -> None:
    assert sqlite_file("sqlite:///mlflow.db") == Path("mlflow.db")
    assert sqlite_file(f"sqlite:///{tmp_path}/m.db?timeout=5") == tmp_path / "m.db"
    assert sqlite_file("sqlite:///:memory:") is None
    assert sqlite_file("http://127.0.0.1:5000") is None


def test_ensure_store_creates_a_complete_store_once(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "mlflow.db"
    uri = f"sqlite:///{db}"
    assert ensure_store(uri) is True
    assert {"experiments", "runs", "registered_models", "model_versions", "alembic_version"} <= tables(db)
    assert [p.name for p in db.parent.iterdir()] == ["mlflow.db"]  # no temporary file left
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("kept")
    assert ensure_store(uri) is False  # an existing store is never replaced
    assert client.get_experiment(experiment).name == "kept"


def test_a_store_that_appears_while_migrating_stays(
    store_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race of two creators, in one process: another store (a copy of a complete one, holding
    an experiment) appears while this call migrates its temporary file. It is kept as it is, and
    the loser's temporary file is gone (two real processes: the slow test below)."""
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    other = tmp_path / "other"
    other.mkdir()
    shutil.copyfile(store_template, other / "mlflow.db")
    kept = mlflow.MlflowClient(tracking_uri=f"sqlite:///{other / 'mlflow.db'}").create_experiment("the winner's")
    real_client = mlflow.MlflowClient

    def winner_first(*args: Any, **kwargs: Any) -> mlflow.MlflowClient:
        if not db.exists():
            shutil.copyfile(other / "mlflow.db", db)  # the other creator links its store now
        return real_client(*args, **kwargs)

    monkeypatch.setattr(mlflow, "MlflowClient", winner_first)
    assert ensure_store(uri) is False
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["mlflow.db"]  # no temporary file left
    assert mlflow.MlflowClient(tracking_uri=uri).get_experiment(kept).name == "the winner's"


@pytest.mark.slow  # two real Python processes, each importing MLflow and migrating a store
def test_concurrent_creators_leave_one_store(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{db}", "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen([sys.executable, "-m", "pipeline.tracking_store"], cwd=ROOT, env=env, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    assert "experiments" in tables(db)
    assert [p.name for p in tmp_path.iterdir()] == ["mlflow.db"]
