"""An upload the server cannot store: its temporary folder is a real 1 MB tmpfs, so spooling
the upload to disk fails with ENOSPC. The client gets a 507 naming the problem, nothing is left
behind, and the next upload that fits is scored. The same when the job's folder fills up while
the job worker writes the scored rows."""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.routes import score as score_route
from api.services.scoring import save_job_input
from api.settings import Settings
from tests.api_helpers import real_csv, wait_ready

TINY = "1M"


@contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``folder`` (needs root, as in the container)."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@contextmanager
def one_slot_client(registry: Any, jobs_dir: Path) -> Iterator[TestClient]:
    """The API with one job slot, its job folders in ``jobs_dir``, no scoring runs recorded."""
    settings = Settings(
        _env_file=None,
        MLFLOW_TRACKING_URI=registry.tracking_uri,
        MONITOR_RECORD=False,
        API_MAX_CONCURRENT_JOBS=1,
        API_JOB_CACHE_DIR=str(jobs_dir),
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def tiny_tmpdir(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs."""
    with tmpfs(tmp_path / "tiny", TINY) as folder:
        yield folder


def test_full_tmpdir_is_a_507_and_leaves_nothing(
    registry, tiny_tmpdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs_dir = tmp_path / "jobs"
    with one_slot_client(registry, jobs_dir) as client:
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


def test_a_job_folder_that_fills_up_while_scoring_is_a_507(
    registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upload (32 KB) fits in the job's folder, the scored rows with their features do not:
    the job worker's ENOSPC reaches the client as a 507, and no output is published."""
    saved: list[int] = []

    def save_and_note(*args: Any) -> Path:
        path = save_job_input(*args)
        saved.append(path.stat().st_size)
        return path

    monkeypatch.setattr(score_route, "save_job_input", save_and_note)
    with tmpfs(tmp_path / "jobs", "40k") as jobs_dir, one_slot_client(registry, jobs_dir) as client:
        wait_ready(client)
        upload = real_csv(1)
        assert 16 * 1024 < len(upload) < 36 * 1024
        response = client.post("/score/file", files={"file": ("records.csv", upload, "text/csv")})
        assert response.status_code == 507, response.text
        detail = response.json()["detail"]
        assert "no space left" in detail and "TMPDIR" in detail, detail
        assert saved == [len(upload)]  # the upload was stored: the worker ran out of room
        published = {p.name for p in jobs_dir.rglob("*") if p.is_file()}
        assert not published & {"scored.parquet", "scored.csv", "rejects.csv", "summary.json"}, published
        assert client.get("/health").status_code == 200


def test_a_full_tmpdir_while_the_worker_extracts_a_zip_is_a_507(registry, tmp_path: Path) -> None:
    """A zip (a few KB) whose member does not fit in the job worker's TMPDIR, where zips are
    extracted: 507, the same words, and the next small CSV is scored."""
    upload = real_csv(4)  # 128 KB of records, a few KB zipped
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("records.csv", upload)
    with (
        tmpfs(tmp_path / "tmp", "40k") as tmp,
        pytest.MonkeyPatch.context() as mp,
        one_slot_client(registry, tmp_path / "jobs") as client,
    ):
        wait_ready(client)  # the model is downloaded through the real temporary folder
        mp.setattr(tempfile, "tempdir", str(tmp))  # the API's, given to the job worker it starts (first job)
        response = client.post("/score/file", files={"file": ("records.zip", buffer.getvalue(), "application/zip")})
        assert response.status_code == 507, response.text
        assert "no space left" in response.json()["detail"], response.text
        assert list(tmp.iterdir()) == []  # the worker's partial extraction is gone
        small = client.post("/score/file", files={"file": ("small.csv", real_csv(1), "text/csv")})
        assert small.status_code == 200, small.text
