"""Response models of the scoring-run endpoints (``/score/jobs``): what the dashboard's Monitoring page reads."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

JobSource = Literal["cli", "dvc", "api"]
JobVerdict = Literal["ok", "watch", "alert", "insufficient"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, protected_namespaces=())


class RealizedMetrics(_Out):
    """How the model did on a file whose outcomes were known."""

    f1: float | None = None
    recall: float | None = None
    precision: float | None = None
    roc_auc: float | None = None


class JobSummary(_Out):
    """One scoring run as listed: counts, scores, drift verdict."""

    id: str = Field(description="the MLflow run id")
    source: JobSource
    started_at: datetime
    model_name: str | None = None
    model_version: str | None = None
    input_name: str | None = None
    input_rows: int
    scored: int
    rejected: int
    predicted_severe_share: float | None = None
    mean_probability: float | None = None
    verdict: JobVerdict | None = None
    drivers: list[str] = Field(default_factory=list)
    realized: RealizedMetrics | None = None


class JobList(_Out):
    """A page of scoring runs, newest first."""

    jobs: list[JobSummary]
    next_page_token: str | None = None


class DriftRow(_Out):
    """Drift of one field (or of the score, ``proba``) against the training profile."""

    field: str
    psi: float
    statistic: float | None = None
    p_value: float | None = None
    status: str


class ScoreHistogram(_Out):
    """Counts of probabilities between ``edges``."""

    edges: list[float]
    counts: list[int]


class Confusion(_Out):
    """Confusion matrix at the model's threshold."""

    tn: int
    fp: int
    fn: int
    tp: int


class JobDownloads(_Out):
    """Relative URLs of the run's files."""

    scored_parquet: str
    scored_csv: str
    rejects_csv: str
    summary_json: str


class JobDetail(JobSummary):
    """One scoring run: the listing's fields plus the drift table, score distribution and downloads."""

    drift: list[DriftRow]
    score_psi: float | None = None
    score_histogram: ScoreHistogram | None = None
    confusion: Confusion | None = None
    downloads: JobDownloads
