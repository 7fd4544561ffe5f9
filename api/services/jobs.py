"""Scoring jobs are scoring runs in MLflow: listed, described and downloaded from the tracking store.

Any replica sharing the tracking server sees every job, also after a restart: the list and the
record come from MLflow, and a job's files are downloaded from the artifact store on demand into
the bounded local cache (``api.jobs.JobStore``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from api.job_schemas import (
    Confusion,
    DriftRow,
    JobDetail,
    JobDownloads,
    JobList,
    JobSummary,
    RealizedMetrics,
    ScoreHistogram,
)
from api.jobs import Job, JobStore
from api.settings import Settings
from pipeline.batch.monitor import LogTarget, Monitor, artifact_location
from pipeline.monitoring.drift import DriftThresholds
from pipeline.monitoring.record import ScoringRun
from pipeline.monitoring.tracking import KIND_TAG, RunPage, RunSummary, StoredRun, get_scoring_run, list_scoring_runs

log = logging.getLogger(__name__)

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")  # MLflow's run ids; anything else is unknown without a lookup
OUTPUT_NAMES = {"scored": "scored.parquet", "rejects": "scored.rejects.csv", "summary": "scored.summary.json"}


class JobNotFound(LookupError):
    """No scoring run has this id."""


class JobGone(LookupError):
    """The run exists but was deleted, or its files are gone from the artifact store."""


class TrackingUnavailable(RuntimeError):
    """The tracking server did not answer, or answered with an error of its own."""


def monitor(settings: Settings, input_name: str | None) -> Monitor | None:
    """The recorder of one API job (logs in the worker thread: MLflow is loaded here), or None when off."""
    if not settings.monitor_record:
        return None
    uri = settings.mlflow_tracking_uri
    return Monitor(
        source="api",
        target=LogTarget(uri, settings.monitor_experiment, artifact_location(uri, settings.mlflow_artifacts_dir)),
        thresholds=DriftThresholds(
            psi_watch=settings.monitor_psi_watch,
            psi_alert=settings.monitor_psi_alert,
            min_rows=settings.monitor_min_rows,
        ),
        background=False,
        input_name=input_name,
    )


def _float(metrics: dict[str, float], key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)


def _realized(metrics: dict[str, float]) -> RealizedMetrics | None:
    if "realized.f1" not in metrics:
        return None
    return RealizedMetrics(
        f1=_float(metrics, "realized.f1"),
        recall=_float(metrics, "realized.recall"),
        precision=_float(metrics, "realized.precision"),
        roc_auc=_float(metrics, "realized.roc_auc"),
    )


def job_summary(run: RunSummary) -> JobSummary:
    """A listed run, from its tags and metrics alone."""
    m = run.metrics
    return JobSummary(
        id=run.run_id,
        source=run.source if run.source in ("cli", "dvc", "api") else "cli",
        started_at=run.started_at,
        model_name=run.model_name,
        model_version=run.model_version,
        input_name=run.input_name,
        input_rows=int(m.get("rows.input", 0)),
        scored=int(m.get("rows.scored", 0)),
        rejected=int(m.get("rows.rejected", 0)),
        predicted_severe_share=_float(m, "score.share_severe"),
        mean_probability=_float(m, "score.mean"),
        verdict=run.verdict if run.verdict in ("ok", "watch", "alert", "insufficient") else None,
        drivers=list(run.drivers),
        realized=_realized(m),
    )


def _page(settings: Settings, limit: int, page_token: str | None) -> RunPage:
    return list_scoring_runs(
        settings.monitor_experiment,
        tracking_uri=settings.mlflow_tracking_uri,
        max_results=limit,
        page_token=page_token,
    )


def _store_answers(settings: Settings) -> bool:
    """Whether the tracking store lists runs at all (told apart from a token it refuses)."""
    try:
        _page(settings, 1, None)
    except (MlflowException, OSError):
        return False
    return True


def list_jobs(settings: Settings, limit: int, page_token: str | None) -> JobList:
    """A page of jobs, newest first. Raises ``ValueError`` for a page token the store refuses."""
    try:
        page = _page(settings, limit, page_token)
    except MlflowException as exc:
        # A forged token fails in the store in many ways (INVALID_PARAMETER_VALUE, INTERNAL_ERROR
        # from SQL, ...): when the same listing without it works, the token is the client's error.
        if page_token is not None and _store_answers(settings):
            raise ValueError("invalid page_token: use the next_page_token of a previous page") from exc
        raise TrackingUnavailable(f"tracking server: {exc.error_code}") from exc
    except OSError as exc:
        raise TrackingUnavailable(f"tracking server unreachable ({type(exc).__name__})") from exc
    return JobList(jobs=[job_summary(r) for r in page.runs], next_page_token=page.next_page_token)


def stored_run(settings: Settings, job_id: str) -> StoredRun:
    """A job's run and record; ``JobNotFound`` or ``JobGone``."""
    if not _RUN_ID.match(job_id):
        raise JobNotFound(job_id)
    client = MlflowClient(settings.mlflow_tracking_uri)
    try:
        run = client.get_run(job_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise JobNotFound(job_id) from exc
        raise TrackingUnavailable(f"tracking server: {exc.error_code}") from exc
    except OSError as exc:
        raise TrackingUnavailable(f"tracking server unreachable ({type(exc).__name__})") from exc
    if run.data.tags.get(KIND_TAG) != "scoring":
        raise JobNotFound(job_id)
    if run.info.lifecycle_stage == "deleted":
        raise JobGone(f"scoring job {job_id} was deleted")
    try:
        return get_scoring_run(job_id, tracking_uri=settings.mlflow_tracking_uri)
    except (MlflowException, OSError, ValueError) as exc:
        raise JobGone(f"scoring job {job_id}: its files are no longer in the artifact store") from exc


def downloads(job_id: str) -> JobDownloads:
    """Relative URLs of a job's files."""
    base = f"/score/jobs/{job_id}"
    return JobDownloads(
        scored_parquet=f"{base}/scored.parquet",
        scored_csv=f"{base}/scored.csv",
        rejects_csv=f"{base}/rejects.csv",
        summary_json=f"{base}/summary.json",
    )


def job_detail(settings: Settings, job_id: str) -> JobDetail:
    """One job: its record, drift table and download links."""
    stored = stored_run(settings, job_id)
    record: ScoringRun = stored.record
    drift = record.drift
    summary = JobSummary(
        id=job_id,
        source=record.source,
        started_at=record.started_at,
        model_name=record.model.name,
        model_version=record.model.version,
        input_name=record.input.name,
        input_rows=record.input.input_rows,
        scored=record.input.scored,
        rejected=record.input.rejected,
        predicted_severe_share=record.score.share_severe,
        mean_probability=record.score.mean,
        verdict=drift.verdict,
        drivers=list(drift.drivers),
        realized=None
        if record.realized is None
        else RealizedMetrics(
            f1=record.realized.f1,
            recall=record.realized.recall,
            precision=record.realized.precision,
            roc_auc=record.realized.roc_auc,
        ),
    )
    return JobDetail(
        **summary.model_dump(),
        drift=[
            DriftRow(field=d.field, psi=d.psi, statistic=d.statistic, p_value=d.p_value, status=d.status)
            for d in drift.fields
        ],
        score_psi=drift.score.psi,
        score_histogram=ScoreHistogram(edges=list(record.score.histogram_edges), counts=list(record.score.histogram)),
        confusion=None if record.realized is None else Confusion(**record.realized.confusion),
        downloads=downloads(job_id),
    )


def local_job(settings: Settings, store: JobStore, job_id: str) -> Job:
    """A job's files on local disk: cached, or downloaded now from the artifact store."""
    job = store.get(job_id)
    if job is not None:
        return job
    stored = stored_run(settings, job_id)
    _, folder = store.new_folder()
    client = MlflowClient(settings.mlflow_tracking_uri)
    try:
        for kind, name in OUTPUT_NAMES.items():
            if kind not in stored.outputs:
                raise JobGone(f"scoring job {job_id} has no {kind} file")
            path = Path(client.download_artifacts(job_id, stored.outputs[kind], str(folder / kind)))
            path.rename(folder / name)
        job = job_from_folder(job_id, folder)
    except (MlflowException, OSError, ValueError) as exc:
        store.discard(folder)
        raise JobGone(f"scoring job {job_id}: its files are no longer in the artifact store") from exc
    except JobGone:
        store.discard(folder)
        raise
    store.add(job)
    return job


def job_from_folder(job_id: str, folder: Path) -> Job:
    """A job whose three files (``OUTPUT_NAMES``) are in ``folder``."""
    from api.services.scoring import first_rejects

    summary: dict[str, Any] = json.loads((folder / OUTPUT_NAMES["summary"]).read_text(encoding="utf-8"))
    rejects_csv = folder / OUTPUT_NAMES["rejects"]
    counts = summary.get("counts", {})
    model = summary.get("model", {})
    return Job(
        job_id=job_id,
        folder=folder,
        parquet=folder / OUTPUT_NAMES["scored"],
        rejects_csv=rejects_csv,
        summary=summary,
        rejects=first_rejects(rejects_csv),
        rejects_total=int(counts.get("rejected_cells", 0)),
        rows_total=int(counts.get("scored", 0)),
        model={k: model.get(k) for k in ("name", "version", "alias", "run_id", "threshold")},
    )
