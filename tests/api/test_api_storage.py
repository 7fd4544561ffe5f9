"""An upload the server cannot store: its temporary folder is a real 1 MB tmpfs, so spooling
the upload to disk fails with ENOSPC. The client gets a 507 naming the problem, nothing is left
behind, and the next upload that fits is scored."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from tests.api_helpers import real_csv, wait_ready

TINY = "1M"


@pytest.fixture
def tiny_tmpdir(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs (needs root, as in the container)."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    folder = tmp_path / "tiny"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TINY}", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_full_tmpdir_is_a_507_and_leaves_nothing(
    registry, tiny_tmpdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs_dir = tmp_path / "jobs"
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        MLFLOW_TRACKING_URI=registry.tracking_uri,
        MONITOR_RECORD=False,
        API_MAX_CONCURRENT_JOBS=1,
        API_JOB_CACHE_DIR=str(jobs_dir),
    )
    with TestClient(create_app(settings)) as client:
        wait_ready(client)  # the model is downloaded through the real temporary folder
        monkeypatch.setattr(tempfile, "tempdir", str(tiny_tmpdir))
        big = real_csv(80)  # 2.5 MB: spooled to disk past 1 MB, where the tmpfs is full
        response = client.post("/score/file", files={"file": ("big.csv", big, "text/csv")})
        assert response.status_code == 507, response.text
        detail = response.json()["detail"]
        assert "ENOSPC" in detail and "temporary folder" in detail, detail
        assert list(tiny_tmpdir.iterdir()) == []
        assert shutil.disk_usage(tiny_tmpdir).used < 64 * 1024
        assert not any(p.is_file() for p in jobs_dir.rglob("*"))
        # The slot was not leaked and the disk is free again: a small file is scored.
        small = client.post("/score/file", files={"file": ("small.csv", real_csv(1), "text/csv")})
        assert small.status_code == 200, small.text
        assert small.json()["rows_total"] > 0
        assert client.get("/health").status_code == 200
