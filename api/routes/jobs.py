"""Scoring jobs (scoring runs in MLflow): HTTP in and out; the work is in ``api.services.jobs``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from api.deps import JobsDep, SettingsDep
from api.job_schemas import JobDetail, JobList
from api.jobs import Job
from api.schemas import ErrorResponse
from api.services.jobs import JobGone, JobNotFound, TrackingUnavailable, job_detail, list_jobs, local_job

router = APIRouter(prefix="/score/jobs", tags=["jobs"])

MAX_PAGE_TOKEN = 1000  # characters: MLflow's tokens are short base64 strings
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No scoring job has this id."},
    410: {"model": ErrorResponse, "description": "The job was deleted, or its files expired from the artifact store."},
    503: {"model": ErrorResponse, "description": "The tracking server is unavailable."},
}


def _translate(exc: LookupError | TrackingUnavailable) -> HTTPException:
    if isinstance(exc, TrackingUnavailable):
        return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc))
    if isinstance(exc, JobGone):
        return HTTPException(status.HTTP_410_GONE, detail=str(exc))
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no scoring job {str(exc)[:64]}")


LIST_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "A parameter is out of range, or the page token was not issued here."},
    503: ERRORS[503],
}


@router.get("", response_model=JobList, summary="Scoring jobs, newest first", responses=LIST_ERRORS)
async def jobs(
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Jobs per page.")] = 20,
    page_token: Annotated[
        str | None, Query(max_length=MAX_PAGE_TOKEN, description="next_page_token of the previous page.")
    ] = None,
) -> JobList:
    """Every scoring run (API uploads, the command line, the DVC stage), newest first, a page at a time."""
    try:
        return await run_in_threadpool(list_jobs, settings, limit, page_token)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    except TrackingUnavailable as exc:
        raise _translate(exc) from exc


@router.get("/{job_id}", response_model=JobDetail, summary="One scoring job", responses=ERRORS)
async def job(job_id: str, settings: SettingsDep) -> JobDetail:
    """A job's counts, score distribution, drift table and verdict, realized metrics, and download links."""
    try:
        return await run_in_threadpool(job_detail, settings, job_id)
    except (JobNotFound, JobGone, TrackingUnavailable) as exc:
        raise _translate(exc) from exc


async def job_files(job_id: str, settings: SettingsDep, store: JobsDep) -> Job:
    """The job's files: in this process's cache, or fetched from MLflow (any replica's job, after a restart)."""
    try:
        return await run_in_threadpool(local_job, settings, store, job_id)
    except (JobNotFound, JobGone, TrackingUnavailable) as exc:
        raise _translate(exc) from exc


def _file(description: str, media: str) -> dict[int | str, dict[str, Any]]:
    return {**ERRORS, 200: {"content": {media: {}}, "description": description}}


@router.get(
    "/{job_id}/scored.parquet",
    response_class=FileResponse,
    summary="Download scored rows (Parquet)",
    responses=_file("Parquet file.", "application/octet-stream"),
)
async def scored_parquet(job_id: str, settings: SettingsDep, store: JobsDep) -> FileResponse:
    """Every scored row as Parquet."""
    found = await job_files(job_id, settings, store)
    return FileResponse(found.parquet, media_type="application/octet-stream", filename=f"scored-{job_id}.parquet")


@router.get(
    "/{job_id}/scored.csv",
    response_class=FileResponse,
    summary="Download scored rows (CSV)",
    responses=_file("CSV file.", "text/csv"),
)
async def scored_csv(job_id: str, settings: SettingsDep, store: JobsDep) -> FileResponse:
    """Every scored row as CSV (converted one Parquet row group at a time, sent in chunks)."""
    found = await job_files(job_id, settings, store)
    path = await run_in_threadpool(found.csv)
    return FileResponse(path, media_type="text/csv", filename=f"scored-{job_id}.csv")


@router.get(
    "/{job_id}/rejects.csv",
    response_class=FileResponse,
    summary="Download rejected cells (CSV)",
    responses=_file("CSV file.", "text/csv"),
)
async def rejects_csv(job_id: str, settings: SettingsDep, store: JobsDep) -> FileResponse:
    """Every rejected cell: line, column, value, reason."""
    found = await job_files(job_id, settings, store)
    return FileResponse(found.rejects_csv, media_type="text/csv", filename=f"rejects-{job_id}.csv")


@router.get(
    "/{job_id}/summary.json",
    response_class=FileResponse,
    summary="Download the job's summary (JSON)",
    responses=_file("JSON file.", "application/json"),
)
async def summary_json(job_id: str, settings: SettingsDep, store: JobsDep) -> FileResponse:
    """The batch summary written next to the Parquet file."""
    found = await job_files(job_id, settings, store)
    return FileResponse(
        found.folder / "scored.summary.json", media_type="application/json", filename=f"summary-{job_id}.json"
    )
