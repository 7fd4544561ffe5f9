"""The compose stack's commands, outside Docker: `mlflow server` with the compose flags, then
`dvc repro` for real in a temporary git repository logging to that server, then the API
started with the compose command, loading the champion over HTTP and scoring a record."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from tests.servers import BIN, free_port, server

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def compose_command(service: str, replace: dict[str, str]) -> list[str]:
    """A service's command from docker-compose.yaml, with container paths and ports swapped."""
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    command = compose["services"][service]["command"]
    assert isinstance(command, list), f"{service}: use the exec (list) form"
    return [replace.get(part, part) for part in command]


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The compose `mlflow` service's command, on 127.0.0.1 with local folders."""
    base = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    cmd = compose_command(
        "mlflow",
        {
            "sqlite:////mlflow/mlflow.db": f"sqlite:///{base / 'mlflow.db'}",
            "/mlflow/artifacts": str(base / "artifacts"),
            "0.0.0.0": "127.0.0.1",
            "5000": str(port),
        },
    )
    cmd[0] = str(BIN / cmd[0])
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with server(cmd, f"http://127.0.0.1:{port}/health", env=env, cwd=base, log=base / "mlflow.log"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, mlflow_server: str) -> tuple[Path, dict[str, str]]:
    """A git repo with the project's tracked files (no outputs, no DVC cache) and its own remote."""
    work = tmp_path_factory.mktemp("dvcrepo") / "project"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in tracked.decode().split("\0"):
        if not name or not (ROOT / name).is_file():
            continue
        dest = work / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest)
    for generated in ("dvc.lock", "data/reports/validation.json", "reports/metrics.json"):
        (work / generated).unlink(missing_ok=True)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": mlflow_server,
        "DVC_NO_ANALYTICS": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    _run(["git", "init", "-q", "-b", "main"], work, env)
    _run(["git", "add", "-A"], work, env)
    _run(["git", "commit", "-qm", "snapshot"], work, env)
    return work, env


def test_repro_builds_every_stage_offline(repo: tuple[Path, dict[str, str]]) -> None:
    work, env = repo
    _run(["dvc", "repro"], work, env)
    report = json.loads((work / "data/reports/validation.json").read_text())
    assert report["ok"] is True
    for year, n, severe in ((2020, 47_744, 0.361), (2021, 56_518, 0.346)):
        table = pd.read_parquet(work / f"data/processed/accidents_{year}.parquet")
        assert len(table) == n
        assert table["severe"].mean() == pytest.approx(severe, abs=0.001)
    metrics = json.loads(_run(["dvc", "metrics", "show", "--json"], work, env).stdout)
    shown = next(iter(metrics.values()))["data"]
    assert list(shown) == ["reports/headline.json"]  # the narrow file: `dvc metrics show` fits a terminal
    assert shown["reports/headline.json"]["data"]["test"]["roc_auc"] > 0.85
    test = json.loads((work / "reports/metrics.json").read_text())["test"]
    assert test["roc_auc"] > 0.85 and test["n"] == 56_518
    registry = json.loads((work / "reports/registry.json").read_text())
    assert "champion" in registry["aliases"]


def test_repro_again_changes_nothing(repo: tuple[Path, dict[str, str]]) -> None:
    work, env = repo
    out = _run(["dvc", "repro"], work, env).stdout
    assert "Running stage" not in out
    assert "up to date" in _run(["dvc", "status"], work, env).stdout


def test_params_change_reruns_only_what_depends_on_it(repo: tuple[Path, dict[str, str]]) -> None:
    work, env = repo
    params = (work / "params.yaml").read_text()
    (work / "params.yaml").write_text(params.replace("examples_per_check: 5", "examples_per_check: 3"))
    status = _run(["dvc", "status"], work, env).stdout
    assert "validate:" in status and "train:" not in status
    (work / "params.yaml").write_text(params)


def test_metrics_and_plots_diff(repo: tuple[Path, dict[str, str]]) -> None:
    work, env = repo
    _run(["git", "add", "-A"], work, env)
    _run(["git", "commit", "-qm", "pipeline outputs"], work, env)
    diff = _run(["dvc", "metrics", "diff", "HEAD~1", "--all", "--json"], work, env).stdout
    assert "reports/headline.json" in diff
    out = work / "plots-html"
    _run(["dvc", "plots", "diff", "HEAD~1", "-o", str(out)], work, env)
    assert (out / "index.html").exists()


def test_push_and_pull_with_the_local_remote(repo: tuple[Path, dict[str, str]]) -> None:
    work, env = repo
    _run(["dvc", "push"], work, env)
    assert any((work / "dvc-remote").rglob("*"))
    shutil.rmtree(work / ".dvc" / "cache")
    shutil.rmtree(work / "data" / "processed")
    _run(["dvc", "pull"], work, env)
    assert len(pd.read_parquet(work / "data/processed/accidents_2021.parquet")) == 56_518


def test_api_serves_the_champion_from_the_mlflow_server(repo: tuple[Path, dict[str, str]], mlflow_server: str) -> None:
    work, _ = repo
    port = free_port()
    cmd = compose_command("api", {})
    cmd[0] = str(BIN / cmd[0])
    # compose's `python -m api` listens where API_HOST and API_PORT say (0.0.0.0:8000 in the container).
    api_env = {
        "MLFLOW_TRACKING_URI": mlflow_server,
        "OMP_WAIT_POLICY": "PASSIVE",
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
    }
    url = f"http://127.0.0.1:{port}"
    with server(cmd, f"{url}/ready", env=api_env, cwd=ROOT, log=work / "api.log"):
        registry = json.loads((work / "reports/registry.json").read_text())
        model = httpx.get(f"{url}/model", timeout=10).json()
        assert model["version"] == registry["version"] and model["alias"] == "champion"
        answer = httpx.post(f"{url}/predict", json={"lum": 3, "agg": 1, "vma": 90, "nb_pietons": 1}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert 0 < answer.json()["probability"] < 1
