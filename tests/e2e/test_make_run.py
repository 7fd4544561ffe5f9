"""`make serve` (the second half of `make run`) stops cleanly on Ctrl-C.

Ctrl-C in a terminal sends SIGINT to the whole foreground process group: make, its recipe
shell and both servers. The test starts make in a process group of its own, waits for both
servers, signals the group and checks that make exits 0 or 130, that nothing crashed, and
that both ports are closed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.servers import free_port, wait_http

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def processes_in(folder: Path) -> list[str]:
    """Command lines of the processes whose working directory is ``folder`` or below."""
    found = []
    for proc in psutil.process_iter(["cwd", "cmdline"]):
        cwd = proc.info["cwd"]
        if cwd and (Path(cwd) == folder or folder in Path(cwd).parents):
            found.append(" ".join(proc.info["cmdline"] or []))
    return found


def start_make(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``make ARGS`` in a process group of its own, as a terminal's foreground job."""
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            ["make", "--no-print-directory", *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def serve_then_ctrl_c(proc: subprocess.Popen[bytes], ports: tuple[int, int], timeout: float, check: Any = None) -> int:
    """Wait for the API and the dashboard on ``ports``, run ``check``, send Ctrl-C to the
    group; make's exit code (the group is killed whatever happens)."""
    api_port, app_port = ports
    try:
        wait_http(f"http://127.0.0.1:{api_port}/health", timeout, proc)
        wait_http(f"http://127.0.0.1:{app_port}/_stcore/health", timeout, proc)
        if check is not None:
            check()
        os.killpg(proc.pid, signal.SIGINT)
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def assert_ports_closed(ports: tuple[int, int]) -> None:
    deadline = time.monotonic() + 10
    while any(port_open(port) for port in ports) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not port_open(ports[0]), "the API still listens after Ctrl-C"
    assert not port_open(ports[1]), "the dashboard still listens after Ctrl-C"


def test_ctrl_c_stops_both_servers(tmp_path: Path) -> None:
    ports = (free_port(), free_port())
    venv = Path(sys.executable).parent.parent
    env = {
        **os.environ,
        # No model needed to answer /health; a store of its own so the checkout stays clean.
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    args = ["-C", str(ROOT), "serve", f"VENV={venv}", f"API_PORT={ports[0]}", f"APP_PORT={ports[1]}"]
    code = serve_then_ctrl_c(start_make(args, ROOT, env, tmp_path / "make.log"), ports, 90)
    output = (tmp_path / "make.log").read_text(errors="replace")
    assert code in (0, 130, -signal.SIGINT), output
    assert "Segmentation fault" not in output, output
    assert_ports_closed(ports)


def test_run_serves_while_the_pipeline_runs_and_ctrl_c_stops_all(tmp_path: Path) -> None:
    """`make run` on a fresh clone: both servers answer before `dvc repro` is done, and Ctrl-C
    in the middle of the pipeline stops the stages, the servers and the store's preparation."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    ports = (free_port(), free_port())
    venv = Path(sys.executable).parent.parent
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the clone's own default store, sqlite:///mlflow.db
    # The test's venv stands for the clone's: `-o` keeps make from installing into it.
    args = ["run", f"VENV={venv}", "-o", f"{venv}/.installed-run", f"API_PORT={ports[0]}", f"APP_PORT={ports[1]}"]

    def pipeline_not_done() -> None:
        assert not (clone / "reports" / "registry.json").exists(), "the pipeline ended before the servers answered"

    code = serve_then_ctrl_c(start_make(args, clone, env, tmp_path / "make.log"), ports, 180, pipeline_not_done)
    output = (tmp_path / "make.log").read_text(errors="replace")
    assert code in (0, 130, 2, -signal.SIGINT), output
    assert_ports_closed(ports)
    deadline = time.monotonic() + 10
    while (left := processes_in(clone)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes still run in the clone: {left}"
    assert not list(clone.glob(".mlflow.db.*.tmp")), "a half-made MLflow store was left behind"
