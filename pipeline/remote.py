"""``make dvc-remote``: point DVC at an S3 or DagsHub remote from environment variables.

The remote and its credentials go to ``.dvc/config.local`` (git-ignored), so nothing secret
is committed and the local default remote stays in ``.dvc/config``.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.config import ROOT
from pipeline.errors import InputError

log = logging.getLogger(__name__)
REMOTE_NAME = "storage"


class RemoteSettings(BaseSettings):
    """``DVC_REMOTE_URL`` (s3://bucket/path), optional endpoint (DagsHub, MinIO) and credentials."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    dvc_remote_url: str | None = None
    dvc_remote_endpoint_url: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None


def remote_commands(settings: RemoteSettings) -> list[list[str]]:
    """The ``dvc remote`` commands that configure the remote as the default, locally."""
    if not settings.dvc_remote_url:
        raise InputError("DVC_REMOTE_URL is not set (see .env.example)", file=".env")
    commands = [["dvc", "remote", "add", "--local", "--default", "--force", REMOTE_NAME, settings.dvc_remote_url]]
    options = {
        "endpointurl": settings.dvc_remote_endpoint_url,
        "access_key_id": settings.aws_access_key_id,
        "secret_access_key": settings.aws_secret_access_key.get_secret_value()
        if settings.aws_secret_access_key
        else None,
    }
    for key, value in options.items():
        if value:
            commands.append(["dvc", "remote", "modify", "--local", REMOTE_NAME, key, value])
    return commands


def configure(settings: RemoteSettings, cwd: str | None = None, dvc: Sequence[str] = ("dvc",)) -> None:
    """Run the commands; secrets are never logged."""
    for command in remote_commands(settings):
        subprocess.run([*dvc, *command[1:]], cwd=cwd or ROOT, check=True, capture_output=True, text=True)
    log.info("DVC remote %r -> %s (in .dvc/config.local)", REMOTE_NAME, settings.dvc_remote_url)


def main() -> None:
    """Entry point of ``make dvc-remote``."""
    configure(RemoteSettings())


if __name__ == "__main__":
    from pipeline.cli import run_stage

    run_stage(main)
