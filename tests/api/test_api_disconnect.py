"""Clients that leave, against a real uvicorn: in the middle of an upload, or while their job
scores. The upload is dropped (no spooled file stays open), the job stops and its folder goes,
and the server keeps answering."""

from __future__ import annotations

import os
import socket
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.api_helpers import real_csv
from tests.servers import api_server

# A real uvicorn per module: end to end, out of the inner loop (make test-fast).
pytestmark = pytest.mark.slow

BOUNDARY = "----hostile-boundary-7d2f"


@dataclass
class Api:
    url: str
    port: int
    pid: int
    tmpdir: Path
    jobs_dir: Path
    log: Path


@pytest.fixture(scope="module")
def api(registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    base = tmp_path_factory.mktemp("disconnect")
    tmpdir, jobs_dir, log = base / "tmp", base / "jobs", base / "api.log"
    tmpdir.mkdir()
    env = {
        "MONITOR_RECORD": "false",
        "API_MAX_CONCURRENT_JOBS": "1",
        "API_JOB_CACHE_DIR": str(jobs_dir),
        "TMPDIR": str(tmpdir),
    }
    with api_server(registry, log, env) as (url, proc):
        port = int(url.rsplit(":", 1)[1])
        yield Api(url, port, proc.pid, tmpdir, jobs_dir, log)


def multipart(content: bytes, name: str = "records.csv") -> tuple[bytes, bytes]:
    """The head (request line, headers, part headers) and the rest of a one-file upload."""
    part = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    body = part + content + f"\r\n--{BOUNDARY}--\r\n".encode()
    head = (
        "POST /score/file HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head, body


def open_spools(api: Api) -> list[str]:
    """Files of the server's TMPDIR it holds open (spooled uploads are unlinked at once)."""
    fds = Path(f"/proc/{api.pid}/fd")
    targets = []
    for fd in fds.iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:
            continue  # closed meanwhile
    return [t for t in targets if t.startswith(str(api.tmpdir))]


def job_files(api: Api) -> list[Path]:
    return [p for p in api.jobs_dir.rglob("*") if p.is_file()] if api.jobs_dir.exists() else []


def until(check, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return bool(check())


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return int(response.status)


def test_client_leaving_mid_upload_leaves_nothing(api: Api) -> None:
    head, body = multipart(real_csv(200))  # 6 MB: spooled to disk past 1 MB
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        sock.sendall(head + body[: len(body) // 2])
        assert until(lambda: open_spools(api) != [], 10), "the upload was never spooled to disk"
    assert until(lambda: open_spools(api) == []), open_spools(api)
    assert job_files(api) == []
    assert get(f"{api.url}/health") == 200
    assert "Traceback" not in api.log.read_text(errors="replace")


def test_client_leaving_while_its_job_scores_cancels_it(api: Api) -> None:
    head, body = multipart(real_csv(1300))  # 195,000 real rows, 42 MB: seconds of scoring
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as sock:
        sock.sendall(head + body)
        assert until(lambda: job_files(api) != [], 30), "the job never started"
        time.sleep(0.5)
    # A finished job keeps its files in the cache; a cancelled one is discarded.
    assert until(lambda: job_files(api) == []), job_files(api)
    assert until(lambda: open_spools(api) == [])
    assert get(f"{api.url}/health") == 200
    # The job slot (API_MAX_CONCURRENT_JOBS=1) is free again: the next upload is scored.
    request = urllib.request.Request(
        f"{api.url}/score/file",
        data=multipart(real_csv(1))[1],
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
    log = api.log.read_text(errors="replace")
    assert "Traceback" not in log and " 500 " not in log, log[-3000:]
