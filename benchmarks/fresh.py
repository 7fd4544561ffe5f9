"""Fresh clone to serving: `git clone`, then `make run` with empty package caches, until the API
answers /ready (a champion is loaded) and the dashboard answers its health check.

python -m benchmarks fresh

The clone is of this checkout's HEAD (committed files only), into a temporary folder; uv's
cache and pip's are empty, so every package is downloaded; ports are random; the environment is
a user's shell (no VIRTUAL_ENV, no PYTHONDONTWRITEBYTECODE). The phases are read off the clone:
`.venv/.installed-run` marks the end of the install (`make setup-run`, the runtime extras only),
each "Running stage" line of `dvc repro` the start of a stage, /health the start of the servers
(beside the pipeline), /ready the champion loaded. Needs the network to PyPI.
FRESH_KEEP_LOG=path keeps make's output.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 600.0
# `dvc repro` announces each stage it runs: the start of one is the end of the one before.
STAGE_LINE = re.compile(rb"^Running stage '([^']+)'")


def follow_output(stream: Any, log: Any, start: float, marks: dict[str, float]) -> None:
    """Copy make's output to ``log``, marking when each DVC stage starts and the repro ends."""
    for line in iter(stream.readline, b""):
        log.write(line)
        now = time.perf_counter() - start
        if match := STAGE_LINE.match(line):
            marks.setdefault(f"stage {match.group(1).decode()}", now)
        elif line.startswith((b"Use `dvc push`", b"Data and pipelines are up to date")):
            marks.setdefault("repro done", now)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # 127.0.0.1 only
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def measure(work: Path) -> dict[str, float]:
    """Seconds from the clone's start to each milestone."""
    clone = work / "clone"
    api_port, app_port = free_port(), free_port()
    env = {
        **os.environ,
        "UV_CACHE_DIR": str(work / "uv-cache"),  # empty: every wheel is downloaded
        "PIP_NO_CACHE_DIR": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    # A user's shell: no active venv, no uv of ours, and Python caching bytecode as it does by
    # default (a sandbox's PYTHONDONTWRITEBYTECODE=1 makes every process compile its imports again).
    for name in ("VIRTUAL_ENV", "UV", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    marks: dict[str, float] = {}
    start = time.perf_counter()
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, env=env)
    marks["clone"] = time.perf_counter() - start
    log = (work / "make.log").open("wb")
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"API_PORT={api_port}", f"APP_PORT={app_port}"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stages: dict[str, float] = {}
    reader = threading.Thread(target=follow_output, args=(proc.stdout, log, start, stages), daemon=True)
    reader.start()
    checks = {
        "install": lambda: (clone / ".venv" / ".installed-run").exists(),
        "servers started": lambda: answers(f"http://127.0.0.1:{api_port}/health"),
        "api ready": lambda: answers(f"http://127.0.0.1:{api_port}/ready"),
        "dashboard": lambda: answers(f"http://127.0.0.1:{app_port}/_stcore/health"),
    }
    try:
        while len(marks) <= len(checks) and time.perf_counter() - start < TIMEOUT:
            if proc.poll() is not None:
                raise RuntimeError(f"make run exited with {proc.returncode}; see {work / 'make.log'}")
            for name, check in checks.items():
                if name not in marks and check():
                    marks[name] = time.perf_counter() - start
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        reader.join(timeout=10)
        log.close()
    missing = sorted(set(checks) - set(marks))
    if missing:
        raise RuntimeError(f"not reached within {TIMEOUT:.0f} s: {missing}")
    marks["serving"] = max(marks["api ready"], marks["dashboard"])
    return dict(sorted({**marks, **stages}.items(), key=lambda item: item[1]))


def run() -> None:
    with tempfile.TemporaryDirectory(prefix="fresh-clone-") as tmp:
        marks = measure(Path(tmp))
        if keep := os.environ.get("FRESH_KEEP_LOG"):
            Path(keep).write_bytes((Path(tmp) / "make.log").read_bytes())
    for name, seconds in marks.items():
        print(f"  {name:<18} {seconds:6.1f} s after the clone started")
    print(f"fresh clone -> make run serving the API (/ready) and the dashboard: {marks['serving']:.1f} s")
