"""The embedded MLflow store appears whole: no reader ever sees a half-migrated file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import mlflow

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
