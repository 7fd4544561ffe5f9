"""File scoring behind the API: an upload is sniffed, saved, and scored by the batch job's orchestrator.

The job streams to files (``pipeline.batch.run.score_to_files``) exactly as the command line
does, within ``Limits`` derived from the API's settings; pages and downloads then read the
written Parquet (``api.jobs.Job``), never a frame kept in memory.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pandas as pd

from api.errors import MAX_MSG, clip
from api.jobs import Job
from api.schemas import rows_of
from api.settings import MEGABYTE, Settings
from pipeline.batch.limits import LimitExceeded, Limits
from pipeline.batch.monitor import Monitor
from pipeline.batch.outputs import output_paths
from pipeline.batch.run import score_to_files
from pipeline.errors import InputError
from pipeline.model import LoadedModel

log = logging.getLogger(__name__)

MAX_REJECTS_SHOWN = 1000
_SNIFF = 8192
_EXTENSIONS = frozenset({"csv", "txt", "zip", "gz"})
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 100  # characters of the uploaded file's name kept on disk


class UnsupportedUpload(ValueError):
    """The upload is neither a CSV nor a zip archive."""


class UploadTooLarge(ValueError):
    """The upload expands beyond what the settings allow; the message names the setting."""


class StorageFull(OSError):
    """The server's temporary folder is full: not the client's fault, and not worth a retry at once."""


# The setting that raises each bound of ``Limits``, named in the 413.
LIMIT_SETTINGS = {"max_expanded_bytes": "API_MAX_EXPANDED_MB", "max_rows": "API_MAX_UPLOAD_ROWS"}


def upload_limits(settings: Settings) -> Limits:
    """What one upload may expand to and hold (``API_MAX_EXPANDED_MB``, ``API_MAX_UPLOAD_ROWS``)."""
    return Limits(max_expanded_bytes=settings.max_expanded_bytes, max_rows=settings.max_upload_rows)


def too_large(name: str, exc: LimitExceeded) -> UploadTooLarge:
    """The refusal of an upload past a limit: which one, and how to raise it."""
    if exc.limit == "max_rows":
        what = f"more than {exc.bound:,} data rows"
    else:
        what = f"more than {exc.bound / MEGABYTE:g} MB of CSV once decompressed"
    setting = LIMIT_SETTINGS.get(exc.limit, exc.limit)
    return UploadTooLarge(f"{name}: {what} ({setting}); split the file, or raise {setting} on the server")


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


@contextlib.contextmanager
def storage_full_errors() -> Iterator[None]:
    """Raise ``StorageFull`` for a full disk or quota; any other ``OSError`` as it is."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise StorageFull(exc.errno, "no space left in the server's TMPDIR for this upload; try again later") from exc


def save_job_input(upload: IO[bytes], filename: str | None, folder: Path) -> Path:
    """Save the upload into the job's ``folder`` (blocking: run it in a worker thread).

    Raises ``UnsupportedUpload`` (neither a CSV nor a zip) or ``StorageFull``."""
    inputs = folder / "input"
    with storage_full_errors():
        inputs.mkdir()
        return save_upload(upload, filename, inputs)


@dataclass(frozen=True)
class UploadJob:
    """One saved upload to score, and how (pickled to a job worker as it is)."""

    path: Path  # where ``save_job_input`` saved it
    filename: str | None  # as the client named it
    folder: Path  # the job's folder, where the outputs go
    job_id: str
    model_identity: dict[str, Any]
    limits: Limits
    max_reject_rate: float
    recorder: Monitor | None = None


def score_upload(upload: UploadJob, model: LoadedModel) -> Job:
    """Score a saved upload into its job's folder (blocking: the API runs it in a worker
    process, ``api.services.job_runner``).

    Raises ``UploadTooLarge``, ``StorageFull`` or ``InputError`` (naming the uploaded file, never
    its path on the server). With a ``recorder`` the job is recorded as a scoring run in MLflow
    and its id is the run's (a failed log leaves the local id, with a warning).
    """
    path, filename, folder, recorder = upload.path, upload.filename, upload.folder, upload.recorder
    inputs = path.parent
    parquet, rejects_csv, _ = output_paths(folder / "scored.parquet")
    try:
        with storage_full_errors():
            summary = score_to_files(
                [path],
                parquet,
                model,
                with_features=True,
                max_reject_rate=upload.max_reject_rate,
                limits=upload.limits,
                monitor=recorder,
            )
    except LimitExceeded as exc:
        raise too_large(safe_name(filename, "upload"), exc) from exc
    except InputError as exc:
        raise InputError(
            clip(_relative(exc.reason, inputs), MAX_MSG),  # a 10 MB cell is not echoed whole
            file=clip(_relative(exc.file, inputs)) if exc.file else None,
            column=clip(exc.column) if exc.column else None,
            rows=exc.rows,
        ) from exc
    for entry in summary.get("input", {}).get("files", []):
        entry["path"] = _relative(str(entry.get("path", "")), inputs)
    counts = summary["counts"]
    return Job(
        job_id=recorder.run_id if recorder is not None and recorder.run_id else upload.job_id,
        folder=folder,
        parquet=parquet,
        rejects_csv=rejects_csv,
        summary=summary,
        rejects=first_rejects(rejects_csv),
        rejects_total=counts["rejected_cells"],
        rows_total=counts["scored"],
        model=upload.model_identity,
        verdict=recorder.record.drift.verdict if recorder is not None and recorder.record is not None else None,
    )


def first_rejects(rejects_csv: Path, limit: int = MAX_REJECTS_SHOWN) -> list[dict[str, Any]]:
    """The first ``limit`` rejects of a job, as the response lists them (blank cells -> None)."""
    text = {"id": str, "column": str, "value": str, "reason": str}
    frame = pd.read_csv(rejects_csv, nrows=limit, dtype=text, keep_default_na=False, na_values=[""])
    frame["value"] = frame["value"].map(clip, na_action="ignore")  # the download has them whole
    return rows_of(frame)
