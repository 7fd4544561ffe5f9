"""`make dvc-remote`: the env-driven remote configuration, applied to a real DVC repo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import InputError
from pipeline.remote import RemoteSettings, configure, remote_commands


def test_commands_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVC_REMOTE_URL", "s3://accident-severity")
    monkeypatch.setenv("DVC_REMOTE_ENDPOINT_URL", "https://dagshub.com/someone/accident-severity.s3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "token")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "token")
    commands = remote_commands(RemoteSettings(_env_file=None))
    assert commands[0][-1] == "s3://accident-severity"
    assert ["endpointurl", "https://dagshub.com/someone/accident-severity.s3"] == commands[1][-2:]
    assert all("--local" in c for c in commands)


def test_missing_url_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DVC_REMOTE_URL", raising=False)
    with pytest.raises(InputError, match="DVC_REMOTE_URL is not set"):
        remote_commands(RemoteSettings(_env_file=None))


@pytest.mark.slow  # real git and dvc processes
def test_configure_writes_config_local_only(tmp_path: Path) -> None:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "-q"], cwd=tmp_path, check=True, env=env)
    settings = RemoteSettings(_env_file=None, dvc_remote_url="s3://bucket/project", aws_access_key_id="key")
    configure(settings, cwd=str(tmp_path), dvc=dvc)
    local = (tmp_path / ".dvc" / "config.local").read_text()
    assert "storage" in local and "access_key_id = key" in local
    assert "storage" not in (tmp_path / ".dvc" / "config").read_text()
