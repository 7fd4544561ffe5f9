"""File scoring: HTTP in and out; the work is in ``api.services.scoring``."""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Query, Request, Response, UploadFile, status
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from api.deps import JobsDep, ServingDep, SettingsDep, TelemetryDep
from api.jobs import Job
from api.responses import Downloads, ScoreResponse
from api.schemas import BAD_BODY, NO_MODEL, ErrorResponse, rows_of
from api.services.jobs import JobGone, JobNotFound, TrackingUnavailable, local_job, monitor
from api.services.scoring import StorageFull, UnsupportedUpload, UploadTooLarge, run_job, upload_limits
from api.uploads import CLIENT_CLOSED, UploadRoute, run_cancellable, too_many_jobs
from pipeline.batch.stop import Cancelled
from pipeline.batch.summary import DEFAULT_MAX_REJECT_RATE

log = logging.getLogger(__name__)
router = APIRouter(prefix="/score", tags=["score"], route_class=UploadRoute)

PageQuery = Annotated[int, Query(ge=1, description="1-based page of scored rows.")]
PageSizeQuery = Annotated[int, Query(ge=1, le=1000, description="Scored rows per page.")]
ERRORS: dict[int | str, dict[str, Any]] = {
    **BAD_BODY,
    413: {
        "model": ErrorResponse,
        "description": "Upload larger than API_MAX_UPLOAD_MB, expanding (zip, gzip) to more than "
        "API_MAX_EXPANDED_MB, or holding more than API_MAX_UPLOAD_ROWS rows.",
    },
    415: {"model": ErrorResponse, "description": "Neither a CSV nor a zip file."},
    429: {"model": ErrorResponse, "description": "API_MAX_CONCURRENT_JOBS jobs are running: retry later."},
    422: {
        "model": ErrorResponse,
        "description": "Bad content: one line naming the file, the column and the lines.",
    },
    **NO_MODEL,
    507: {
        "model": ErrorResponse,
        "description": "The server could not store the upload or its results (temporary folder full).",
    },
}


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
) -> ScoreResponse | Response:
    """Score an upload with the batch job's code: a CSV of flat accident records (one per line,
    columns named as in `GET /model`), or a zip holding one year's four raw BAAC tables.

    Returns the summary, the rejected cells, the first page of scored rows (`id`, which is
    `Num_Acc` when the file has one, `proba`, `label`, then every record field including `lat`
    and `long`) and download links. Later pages: `GET /score/file/{job_id}?page=2`. Each job is
    a scoring run in MLflow (`job_id` is its run id): `GET /score/jobs/{job_id}` gives its drift
    and downloads, from any replica sharing the tracking server, also after a restart.
    At most `API_MAX_CONCURRENT_JOBS` jobs run at once: more get 429 with `Retry-After`.
    """
    if not jobs.try_start():
        raise too_many_jobs(jobs.max_running)
    job_id, folder = jobs.new_folder()
    done = False
    try:
        job = await run_cancellable(
            request,
            run_job,
            file.file,
            file.filename,
            folder,
            job_id,
            serving.model,
            serving.identity.model_dump(),
            upload_limits(settings),
            max_reject_rate,
            monitor(settings, file.filename[:200] if file.filename else None),
        )
        first_page = await run_in_threadpool(job.page, 1, page_size)
        done = True
    except Cancelled:
        return Response(status_code=CLIENT_CLOSED)  # nobody is left to read an answer
    except UnsupportedUpload as exc:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"{(file.filename or 'upload')[:200]}: not a CSV or zip file ({exc})",
        ) from exc
    except UploadTooLarge as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=str(exc)) from exc
    except StorageFull as exc:
        raise HTTPException(status.HTTP_507_INSUFFICIENT_STORAGE, detail=exc.strerror) from exc
    finally:
        jobs.finish()
        if not done:
            jobs.discard(folder)
    jobs.add(job)
    counts = job.summary["counts"]
    telemetry.count_predictions(counts["predicted_severe"], counts["scored"])
    telemetry.scoring_run_finished(job.verdict, counts["input_rows"], counts["scored"])
    return _response(job, request, 1, page_size, rows_of(first_page))


async def _job(jobs: JobsDep, job_id: str, settings: SettingsDep) -> Job:
    """The job's files: in this process's cache, or fetched from MLflow (any replica's job, after a restart)."""
    try:
        return await run_in_threadpool(local_job, settings, jobs, job_id)
    except JobNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no scoring job {job_id[:64]}") from exc
    except JobGone as exc:
        raise HTTPException(status.HTTP_410_GONE, detail=str(exc)) from exc
    except TrackingUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from exc


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "Unknown job."},
    410: {"model": ErrorResponse, "description": "The job was deleted, or its files expired."},
}


@router.get(
    "/file/{job_id}.parquet",
    response_class=FileResponse,
    summary="Download scored rows (Parquet)",
    responses={**NOT_FOUND, 200: {"content": {"application/octet-stream": {}}, "description": "Parquet file."}},
)
async def download_parquet(job_id: str, jobs: JobsDep, settings: SettingsDep) -> FileResponse:
    """Every scored row, with features, as Parquet."""
    job = await _job(jobs, job_id, settings)
    return FileResponse(job.parquet, media_type="application/octet-stream", filename=f"scored-{job_id}.parquet")


@router.get(
    "/file/{job_id}.rejects.csv",
    response_class=FileResponse,
    summary="Download rejected cells (CSV)",
    responses={**NOT_FOUND, 200: {"content": {"text/csv": {}}, "description": "CSV file."}},
)
async def download_rejects(job_id: str, jobs: JobsDep, settings: SettingsDep) -> FileResponse:
    """Every rejected cell: line, column, value, reason."""
    job = await _job(jobs, job_id, settings)
    return FileResponse(job.rejects_csv, media_type="text/csv", filename=f"rejects-{job_id}.csv")


@router.get(
    "/file/{job_id}.csv",
    response_class=FileResponse,
    summary="Download scored rows (CSV)",
    responses={**NOT_FOUND, 200: {"content": {"text/csv": {}}, "description": "CSV file."}},
)
async def download_csv(job_id: str, jobs: JobsDep, settings: SettingsDep) -> FileResponse:
    """Every scored row, with features, as CSV."""
    job = await _job(jobs, job_id, settings)
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
    job_id: str,
    request: Request,
    jobs: JobsDep,
    settings: SettingsDep,
    page: PageQuery = 1,
    page_size: PageSizeQuery = 100,
) -> ScoreResponse:
    """The same response as the upload, for another page of the scored rows."""
    job = await _job(jobs, job_id, settings)
    frame = await run_in_threadpool(job.page, page, page_size)
    return _response(job, request, page, page_size, rows_of(frame))
