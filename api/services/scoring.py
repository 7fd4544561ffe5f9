"""File scoring behind the API: an upload is sniffed, saved, and scored by the batch job's orchestrator.

The job streams to files (``pipeline.batch.run.score_to_files``) exactly as the command line
does, within ``Limits`` derived from the API's settings; pages and downloads then read the
written Parquet (``api.jobs.Job``), never a frame kept in memory.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import IO, Any

import pandas as pd

from api.jobs import Job
from api.schemas import rows_of
from pipeline.batch.limits import LimitExceeded, Limits
from pipeline.batch.monitor import Monitor
from pipeline.batch.outputs import output_paths
from pipeline.batch.run import score_to_files
from pipeline.errors import InputError
from pipeline.model import LoadedModel

log = logging.getLogger(__name__)

MAX_REJECTS_SHOWN = 1000
ZIP_EXPANSION = 20  # an upload may expand to this many times API_MAX_UPLOAD_MB (BAAC CSVs compress ~8x)
_SNIFF = 8192
_EXTENSIONS = frozenset({"csv", "txt", "zip", "gz"})
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 100  # characters of the uploaded file's name kept on disk


class UnsupportedUpload(ValueError):
    """The upload is neither a CSV nor a zip archive."""


class UploadTooLarge(ValueError):
    """The upload expands beyond what the settings allow; the message names the setting."""


def upload_limits(max_upload_bytes: int) -> Limits:
    """What one upload may expand to: ``ZIP_EXPANSION`` times the upload limit."""
    return Limits(max_expanded_bytes=max_upload_bytes * ZIP_EXPANSION)


def safe_name(name: str | None, fallback: str) -> str:
    """The uploaded file's base name, reduced to safe characters and a bounded length."""
    base = _SAFE_NAME.sub("_", Path(name or "").name)[-_MAX_NAME:].strip("._")
    return base or fallback


def upload_kind(head: bytes, filename: str | None) -> str:
    """Tell a zip, a gzipped CSV or a CSV apart by content; a foreign extension is refused first."""
    name = (filename or "").lower()
    extension = name.rsplit(".", 1)[-1] if "." in name else ""
    if extension and extension not in _EXTENSIONS:
        raise UnsupportedUpload(f".{extension[:20]} file")
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "csv.gz"
    if b"\x00" in head:
        raise UnsupportedUpload("binary content")
    return "csv"


def save_upload(upload: IO[bytes], filename: str | None, folder: Path) -> Path:
    """Write the upload under ``folder`` with the extension its content calls for."""
    upload.seek(0)
    kind = upload_kind(upload.read(_SNIFF), filename)
    upload.seek(0)
    name = safe_name(filename, "upload")
    for suffix in (".csv.gz", ".csv", ".txt", ".zip", ".gz"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)] or "upload"
            break
    target = folder / f"{name}.{kind}"
    with target.open("wb") as dst:
        shutil.copyfileobj(upload, dst, 1 << 20)
    return target


def _relative(text: str, folder: Path) -> str:
    return text.replace(f"{folder}/", "")


def run_job(
    upload: IO[bytes],
    filename: str | None,
    folder: Path,
    job_id: str,
    model: LoadedModel,
    model_identity: dict[str, Any],
    max_upload_bytes: int,
    max_reject_rate: float,
    recorder: Monitor | None = None,
) -> Job:
    """Save, score and write one upload into ``folder`` (blocking: run it in a worker thread).

    Raises ``UnsupportedUpload``, ``UploadTooLarge`` or ``InputError`` (naming the uploaded
    file, never its path on the server). With a ``recorder`` the job is recorded as a scoring run
    in MLflow and its id is the run's (a failed log leaves the local id, with a warning).
    """
    inputs = folder / "input"
    inputs.mkdir()
    path = save_upload(upload, filename, inputs)
    parquet, rejects_csv, _ = output_paths(folder / "scored.parquet")
    limits = upload_limits(max_upload_bytes)
    try:
        summary = score_to_files(
            [path],
            parquet,
            model,
            with_features=True,
            max_reject_rate=max_reject_rate,
            limits=limits,
            monitor=recorder,
        )
    except LimitExceeded as exc:
        raise UploadTooLarge(
            f"{path.name}: expands to more than {exc.bound >> 20} MB of CSV "
            f"({ZIP_EXPANSION} x API_MAX_UPLOAD_MB); raise API_MAX_UPLOAD_MB or split the file"
        ) from exc
    except InputError as exc:
        raise InputError(
            _relative(exc.reason, inputs),
            file=_relative(exc.file, inputs) if exc.file else None,
            column=exc.column,
            rows=exc.rows,
        ) from exc
    for entry in summary.get("input", {}).get("files", []):
        entry["path"] = _relative(str(entry.get("path", "")), inputs)
    counts = summary["counts"]
    return Job(
        job_id=recorder.run_id if recorder is not None and recorder.run_id else job_id,
        folder=folder,
        parquet=parquet,
        rejects_csv=rejects_csv,
        summary=summary,
        rejects=first_rejects(rejects_csv),
        rejects_total=counts["rejected_cells"],
        rows_total=counts["scored"],
        model=model_identity,
        verdict=recorder.record.drift.verdict if recorder is not None and recorder.record is not None else None,
    )


def first_rejects(rejects_csv: Path, limit: int = MAX_REJECTS_SHOWN) -> list[dict[str, Any]]:
    """The first ``limit`` rejects of a job, as the response lists them (blank cells -> None)."""
    text = {"id": str, "column": str, "value": str, "reason": str}
    frame = pd.read_csv(rejects_csv, nrows=limit, dtype=text, keep_default_na=False, na_values=[""])
    return rows_of(frame)
