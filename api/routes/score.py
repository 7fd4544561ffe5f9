"""File scoring: HTTP in and out; the work is in ``api.services.scoring``."""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Query, Request, Response, UploadFile, status
from starlette.concurrency import run_in_threadpool

from api.deps import JobsDep, ServingDep, SettingsDep, TelemetryDep
from api.jobs import Job
from api.responses import Downloads, ScoreResponse
from api.routes.jobs import ERRORS as JOB_ERRORS
from api.routes.jobs import job_files
from api.schemas import BAD_BODY, NO_MODEL, ErrorResponse, rows_of
from api.services.job_runner import WorkerLost
from api.services.jobs import monitor
from api.services.scoring import (
    StorageFull,
    UnsupportedUpload,
    UploadJob,
    UploadTooLarge,
    save_job_input,
    upload_limits,
)
from api.uploads import CLIENT_CLOSED, UploadRoute, disconnect_event
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
    429: {
        "model": ErrorResponse,
        "description": "API_MAX_CONCURRENT_JOBS uploads are being received or scored: retry later.",
    },
    422: {
        "model": ErrorResponse,
        "description": "Bad content: one line naming the file, the column and the lines.",
    },
    503: {
        "model": ErrorResponse,
        "description": NO_MODEL[503]["description"][:-1] + ", or the worker process scoring the file stopped.",
    },
    507: {
        "model": ErrorResponse,
        "description": "The server could not store the upload or its results (temporary folder full).",
    },
}


def _response(job: Job, request: Request, page: int, page_size: int, rows: list[dict[str, Any]]) -> ScoreResponse:
    def link(route: str) -> str:
        return str(request.url_for(route, job_id=job.job_id).path)

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
            "downloads": Downloads(
                parquet=link("scored_parquet"), csv=link("scored_csv"), rejects_csv=link("rejects_csv")
            ),
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
    At most `API_MAX_CONCURRENT_JOBS` uploads are received or scored at once: more get 429 with
    `Retry-After`.
    """
    # The job slot was taken by ``UploadRoute`` before the body was read, and is given back after.
    job_id, folder = jobs.new_folder()
    done = False
    try:
        path = await run_in_threadpool(save_job_input, file.file, file.filename, folder)
        async with disconnect_event(request) as client_left:
            upload = UploadJob(
                path,
                file.filename,
                folder,
                job_id,
                serving.identity.model_dump(),
                upload_limits(settings),
                max_reject_rate,
                monitor(settings, file.filename[:200] if file.filename else None),
            )
            job = await jobs.runner.run(upload, serving.model, client_left)
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
    except WorkerLost as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from exc
    finally:
        if not done:
            jobs.discard(folder)
    jobs.add(job)
    counts = job.summary["counts"]
    telemetry.count_predictions(counts["predicted_severe"], counts["scored"])
    telemetry.scoring_run_finished(job.verdict, counts["input_rows"], counts["scored"])
    return _response(job, request, 1, page_size, rows_of(first_page))


# The job's files and their downloads are served by the jobs router (/score/jobs/{id}/...),
# whichever replica ran the job; this router only adds the pages of scored rows.
@router.get(
    "/file/{job_id}",
    response_model=ScoreResponse,
    name="score_job",
    summary="A page of a scoring job",
    responses=JOB_ERRORS,
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
    job = await job_files(job_id, settings, jobs)
    frame = await run_in_threadpool(job.page, page, page_size)
    return _response(job, request, page, page_size, rows_of(frame))
