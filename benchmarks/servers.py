"""A server for a benchmark: started on a free 127.0.0.1 port, waited for, stopped after.

The start, wait and stop are the tests' (``tests.servers``); this adds the benchmark's defaults
(the project root as working folder, a longer wait, the port handed back).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.servers import free_port, server

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["ROOT", "free_port", "serve"]


@contextmanager
def serve(
    command: Sequence[str], env: Mapping[str, str], port: int, ready_path: str, logs: Path, timeout: float = 180.0
) -> Iterator[int]:
    """Run ``command`` (which listens on ``port``) until ``ready_path`` answers 200; stop it on exit."""
    with server(command, f"http://127.0.0.1:{port}{ready_path}", env=dict(env), cwd=ROOT, timeout=timeout, log=logs):
        yield port
