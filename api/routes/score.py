"""File scoring: the batch job's code behind an upload, with paged results and downloads."""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import zipfile
from pathlib import Path
from typing import IO, Annotated, Any

import pandas as pd
from fastapi import APIRouter, File, HTTPException, Query, Request, UploadFile, status
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from api.deps import JobsDep, ServingDep, SettingsDep, TelemetryDep
from api.jobs import Job
from api.schemas import BAD_BODY, NO_MODEL, Downloads, ErrorResponse, ScoreResponse, rows_of
from pipeline.errors import InputError
from pipeline.model import LoadedModel
from pipeline.score import DEFAULT_MAX_REJECT_RATE, score_paths, sibling, write_result

log = logging.getLogger(__name__)
router = APIRouter(prefix="/score", tags=["score"])

MAX_REJECTS_SHOWN = 1000
ZIP_EXPANSION = 20  # a zip may expand to this many times the upload limit (BAAC CSVs compress ~8x)
_SNIFF = 8192
_EXTENSIONS = frozenset({"csv", "txt", "zip", "gz"})
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
PageQuery = Annotated[int, Query(ge=1, description="1-based page of scored rows.")]
PageSizeQuery = Annotated[int, Query(ge=1, le=1000, description="Scored rows per page.")]
ERRORS: dict[int | str, dict[str, Any]] = {
    **BAD_BODY,
    413: {"model": ErrorResponse, "description": "Upload larger than API_MAX_UPLOAD_MB."},
    415: {"model": ErrorResponse, "description": "Neither a CSV nor a zip file."},
    422: {
        "model": ErrorResponse,
        "description": "Bad content: one line naming the file, the column and the lines.",
    },
    **NO_MODEL,
}


class UnsupportedUpload(ValueError):
    """The upload is neither a CSV nor a zip archive."""


def _safe_name(name: str | None, fallback: str) -> str:
    base = _SAFE_NAME.sub("_", Path(name or "").name).strip("._")
    return base or fallback


def _kind(head: bytes, filename: str | None) -> str:
    """Tell a zip, a gzipped CSV or a CSV apart by content; a foreign extension is refused first."""
    name = (filename or "").lower()
    extension = name.rsplit(".", 1)[-1] if "." in name else ""
    if extension and extension not in _EXTENSIONS:
        raise UnsupportedUpload(f".{extension} file")
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "csv.gz"
    if b"\x00" in head:
        raise UnsupportedUpload("binary content")
    return "csv"


def _check_zip(archive: Path, max_bytes: int) -> None:
    """Refuse archives that would expand beyond what this server accepts (the batch job allows 4 GiB)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            total = sum(m.file_size for m in zf.infolist())
    except zipfile.BadZipFile as exc:
        raise InputError(f"not a readable zip archive ({exc})", file=archive.name) from exc
    if total > max_bytes:
        raise InputError(f"zip archive expands to more than {max_bytes >> 20} MB", file=archive.name)


def save_upload(upload: IO[bytes], filename: str | None, folder: Path, max_bytes: int) -> Path:
    """Write the upload under ``folder`` with the extension its content calls for."""
    upload.seek(0)
    kind = _kind(upload.read(_SNIFF), filename)
    upload.seek(0)
    name = _safe_name(filename, "upload")
    for suffix in (".csv.gz", ".csv", ".txt", ".zip", ".gz"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)] or "upload"
            break
    target = folder / f"{name}.{kind}"
    with target.open("wb") as dst:
        shutil.copyfileobj(upload, dst, 1 << 20)
    if kind == "zip":
        _check_zip(target, max_bytes * ZIP_EXPANSION)
    return target


def _relative(text: str, folder: Path) -> str:
    return text.replace(f"{folder}/", "")


def _response(job: Job, request: Request, page: int, page_size: int, rows: list[dict[str, Any]]) -> ScoreResponse:
    base = str(request.url_for("score_job", job_id=job.job_id).path)
    return ScoreResponse.model_validate(
        {
            "job_id": job.job_id,
            "model": job.model,
            "summary": job.summary,
            "rejects": job.rejects,
            "rejects_total": job.rejects_total,
            "page": page,
            "page_size": page_size,
            "pages": max(1, math.ceil(job.rows_total / page_size)),
            "rows_total": job.rows_total,
            "rows": rows,
            "downloads": Downloads(parquet=f"{base}.parquet", csv=f"{base}.csv", rejects_csv=f"{base}.rejects.csv"),
        }
    )


def _run_job(
    upload: IO[bytes],
    filename: str | None,
    folder: Path,
    job_id: str,
    model: LoadedModel,
    model_identity: dict[str, Any],
    max_bytes: int,
    max_reject_rate: float,
) -> tuple[Job, pd.DataFrame]:
    """Save, score and write one upload (runs in a worker thread)."""
    inputs = folder / "input"
    inputs.mkdir()
    path = save_upload(upload, filename, inputs, max_bytes)
    try:
        result = score_paths([path], model, with_features=True, max_reject_rate=max_reject_rate)
    except InputError as exc:
        # Name the uploaded file, not its temporary path on the server.
        raise InputError(
            _relative(exc.reason, inputs),
            file=_relative(exc.file, inputs) if exc.file else None,
            column=exc.column,
            rows=exc.rows,
        ) from exc
    parquet = folder / "scored.parquet"
    write_result(result, parquet)
    summary = json.loads(json.dumps(result.summary, default=str))
    for entry in summary.get("input", {}).get("files", []):
        entry["path"] = _relative(str(entry.get("path", "")), inputs)
    job = Job(
        job_id=job_id,
        folder=folder,
        parquet=parquet,
        rejects_csv=sibling(parquet, ".rejects.csv"),
        summary=summary,
        rejects=rows_of(result.rejects.head(MAX_REJECTS_SHOWN)),
        rejects_total=len(result.rejects),
        rows_total=len(result.scored),
        model=model_identity,
    )
    return job, result.scored


@router.post(
    "/file",
    response_model=ScoreResponse,
    summary="Score a file",
    responses=ERRORS,
)
async def score_file(
    request: Request,
    file: Annotated[UploadFile, File(description="A CSV of accident records, or a zip of one year's BAAC tables.")],
    serving: ServingDep,
    settings: SettingsDep,
    jobs: JobsDep,
    telemetry: TelemetryDep,
    page_size: PageSizeQuery = 100,
    max_reject_rate: Annotated[
        float, Query(ge=0, le=1, description="Fail (422) when a larger share of the rows is rejected.")
    ] = DEFAULT_MAX_REJECT_RATE,
) -> ScoreResponse:
    """Score an upload with the batch job's code: a CSV of flat accident records (one per line,
    columns named as in `GET /model`), or a zip holding one year's four raw BAAC tables.

    Returns the summary, the rejected cells, the first page of scored rows (`id`, which is
    `Num_Acc` when the file has one, `proba`, `label`, then every record field including `lat`
    and `long`) and download links. Later pages: `GET /score/file/{job_id}?page=2`. Jobs live
    in this server process (a temporary folder), the 8 most recent only.
    """
    job_id, folder = jobs.new_folder()
    done = False
    try:
        job, scored = await run_in_threadpool(
            _run_job,
            file.file,
            file.filename,
            folder,
            job_id,
            serving.model,
            serving.identity.model_dump(),
            settings.max_upload_bytes,
            max_reject_rate,
        )
        done = True
    except UnsupportedUpload as exc:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"{file.filename or 'upload'}: not a CSV or zip file ({exc})",
        ) from exc
    finally:
        if not done:
            jobs.discard(folder)
    jobs.add(job)
    telemetry.count_predictions(int(scored["label"].sum()), len(scored))
    return _response(job, request, 1, page_size, rows_of(scored.iloc[:page_size]))


def _job(jobs: JobsDep, job_id: str) -> Job:
    job = jobs.get(job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no scoring job {job_id} (only recent jobs are kept)")
    return job


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse, "description": "Unknown or expired job."}}


@router.get(
    "/file/{job_id}.parquet",
    response_class=FileResponse,
    summary="Download scored rows (Parquet)",
    responses={**NOT_FOUND, 200: {"content": {"application/octet-stream": {}}, "description": "Parquet file."}},
)
async def download_parquet(job_id: str, jobs: JobsDep) -> FileResponse:
    """Every scored row, with features, as Parquet."""
    job = _job(jobs, job_id)
    return FileResponse(job.parquet, media_type="application/octet-stream", filename=f"scored-{job_id}.parquet")


@router.get(
    "/file/{job_id}.rejects.csv",
    response_class=FileResponse,
    summary="Download rejected cells (CSV)",
    responses={**NOT_FOUND, 200: {"content": {"text/csv": {}}, "description": "CSV file."}},
)
async def download_rejects(job_id: str, jobs: JobsDep) -> FileResponse:
    """Every rejected cell: line, column, value, reason."""
    job = _job(jobs, job_id)
    return FileResponse(job.rejects_csv, media_type="text/csv", filename=f"rejects-{job_id}.csv")


@router.get(
    "/file/{job_id}.csv",
    response_class=FileResponse,
    summary="Download scored rows (CSV)",
    responses={**NOT_FOUND, 200: {"content": {"text/csv": {}}, "description": "CSV file."}},
)
async def download_csv(job_id: str, jobs: JobsDep) -> FileResponse:
    """Every scored row, with features, as CSV."""
    job = _job(jobs, job_id)
    path = await run_in_threadpool(job.csv)
    return FileResponse(path, media_type="text/csv", filename=f"scored-{job_id}.csv")


@router.get(
    "/file/{job_id}",
    response_model=ScoreResponse,
    name="score_job",
    summary="A page of a scoring job",
    responses=NOT_FOUND,
)
async def score_job(
    job_id: str, request: Request, jobs: JobsDep, page: PageQuery = 1, page_size: PageSizeQuery = 100
) -> ScoreResponse:
    """The same response as the upload, for another page of the scored rows."""
    job = _job(jobs, job_id)
    frame = await run_in_threadpool(job.page, page, page_size)
    return _response(job, request, page, page_size, rows_of(frame))
