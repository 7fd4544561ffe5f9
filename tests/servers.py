"""Start and stop the real servers the tests talk to, on 127.0.0.1 only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``url`` answers 200, failing early if the process died."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s ({last})")


@contextmanager
def server(
    cmd: Sequence[str],
    health_url: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 90.0,
    log: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process until the block ends; its output goes to ``log``."""
    out = log.open("wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(list(cmd), env={**os.environ, **(env or {})}, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(health_url, timeout, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]


def mlflow_server_cmd(port: int, backend: str, artifacts: str) -> list[str]:
    """`mlflow server` with the flags docker-compose.yaml uses, bound to 127.0.0.1."""
    return [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        artifacts,
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]


@contextmanager
def api_server(
    registry: Any, log: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``uvicorn api.main:app`` on a free port of 127.0.0.1, serving the registry's champion
    (``env`` adds or overrides settings); yields its URL and process."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = {
        "MLFLOW_TRACKING_URI": registry.tracking_uri,
        "MODEL_NAME": registry.model_name,
        "MODEL_ALIAS": "champion",
        "OMP_WAIT_POLICY": "PASSIVE",
        "API_KEY": "",
        **(env or {}),
    }
    cmd = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port)]
    with server(cmd, f"{url}/ready", env=settings, cwd=ROOT, log=log, timeout=120) as proc:
        yield url, proc


@contextmanager
def api_process(registry: Any, log: Path) -> Iterator[str]:
    """The API serving the registry's champion with default settings; yields its URL."""
    with api_server(registry, log) as (url, _):
        yield url
