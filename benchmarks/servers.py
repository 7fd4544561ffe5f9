"""A server for a benchmark: started on a free 127.0.0.1 port, waited for, stopped after."""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A port nobody listens on now, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(port: int, path: str) -> bool:
    """Whether ``GET path`` on the port answers 200."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@contextmanager
def serve(
    command: Sequence[str], env: Mapping[str, str], port: int, ready_path: str, logs: Path, timeout: float = 180.0
) -> Iterator[int]:
    """Run ``command`` (which listens on ``port``) until ``ready_path`` answers 200; stop it on exit."""
    with logs.open("wb") as out:
        process = subprocess.Popen(list(command), cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while not answers(port, ready_path):
                if process.poll() is not None:
                    raise RuntimeError(f"{command[0]} exited with code {process.returncode}; see {logs}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{ready_path} never answered 200 on port {port}; see {logs}")
                time.sleep(0.2)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
