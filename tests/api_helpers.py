"""Helpers of the API tests: the model loads in the background, so tests wait for /ready."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient


def wait_ready(client: TestClient, timeout: float = 60.0) -> dict[str, object]:
    """Poll ``/ready`` until it answers 200 (the model is in); returns its body."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/ready")
        if response.status_code == 200:
            body: dict[str, object] = response.json()
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"/ready still {response.status_code} after {timeout} s: {response.text}")
        time.sleep(0.05)


def wait_error(client: TestClient, timeout: float = 60.0) -> str:
    """Poll ``/ready`` until the first load attempt failed; returns the reason."""
    deadline = time.monotonic() + timeout
    while True:
        detail = str(client.get("/ready").json().get("detail", ""))
        if "not loaded yet" not in detail:
            return detail
        if time.monotonic() > deadline:
            raise TimeoutError(f"/ready still says {detail!r} after {timeout} s")
        time.sleep(0.05)


def real_csv(copies: int) -> bytes:
    """The real 150-record upload extract, its rows repeated ``copies`` times, renumbered (unique ids)."""
    from tests.conftest import UPLOAD

    header, *rows = UPLOAD.read_bytes().splitlines(keepends=True)
    out = [header]
    for n, row in enumerate(row for _ in range(copies) for row in rows):
        out.append(b"%d;" % (n + 1) + row.split(b";", 1)[1])
    return b"".join(out)
