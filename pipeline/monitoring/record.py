"""The scoring-run record: what one batch scoring read, which model scored it, how it drifted, how it did.

Pure functions build it from what the scoring already has in hand (records, probabilities,
outcomes when the file carries them); ``pipeline.monitoring.tracking`` stores it in MLflow.
Realized metrics come from ``pipeline.metrics`` (scikit-learn's), the numbers ``evaluate`` and
the batch summary report.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from pipeline.monitoring.drift import DriftReport, DriftThresholds, drift_report
from pipeline.monitoring.profile import Profile

Source = Literal["cli", "dvc", "api"]
HISTOGRAM_EDGES: tuple[float, ...] = tuple(round(i / 10, 1) for i in range(11))  # probability, 10 equal bins
QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, protected_namespaces=())


class ModelRef(_Frozen):
    """Which registered model scored the file."""

    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None


class InputSummary(_Frozen):
    """What was read: a fingerprint of the input files and the row counts."""

    fingerprint: str  # SHA-256 over the files' names and SHA-256s
    name: str | None = None  # what the user called the input (file or folder name)
    files: dict[str, str] = Field(default_factory=dict)  # file name -> SHA-256
    input_rows: int = Field(ge=0)
    scored: int = Field(ge=0)
    rejected: int = Field(ge=0)  # rows dropped as invalid


class ScoreSummary(_Frozen):
    """The distribution of the probabilities of one run."""

    mean: float
    share_severe: float  # share at or above the threshold
    threshold: float
    quantiles: dict[str, float]
    histogram_edges: tuple[float, ...] = HISTOGRAM_EDGES
    histogram: tuple[int, ...]


class Realized(_Frozen):
    """How the model did on a file whose outcomes are known."""

    n: int
    positives: int
    roc_auc: float | None  # None when the file holds one class only
    f1: float
    recall: float
    precision: float
    confusion: dict[str, int]  # tn, fp, fn, tp at the model's threshold


class ScoringRun(_Frozen):
    """Everything recorded about one scoring run."""

    started_at: datetime
    source: Source
    model: ModelRef
    input: InputSummary
    score: ScoreSummary
    drift: DriftReport
    realized: Realized | None = None
    seconds: float | None = None  # the scoring's own time, when the caller measured it


def fingerprint(files: Mapping[str, str]) -> str:
    """One SHA-256 for a set of input files (name -> SHA-256), independent of their order."""
    lines = "".join(f"{name}\t{digest}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def score_summary(proba: np.ndarray, threshold: float) -> ScoreSummary:
    """Mean, share predicted severe, quantiles and a 10-bin histogram of the probabilities."""
    p = np.asarray(proba, dtype=np.float64)
    if len(p) == 0:
        return ScoreSummary(mean=0.0, share_severe=0.0, threshold=threshold, quantiles={}, histogram=(0,) * 10)
    histogram, _ = np.histogram(np.clip(p, 0.0, 1.0), bins=np.asarray(HISTOGRAM_EDGES))
    return ScoreSummary(
        mean=round(float(p.mean()), 6),
        share_severe=round(float((p >= threshold).mean()), 6),
        threshold=threshold,
        quantiles={
            f"q{round(q * 100):02d}": round(float(v), 6)
            for q, v in zip(QUANTILES, np.quantile(p, QUANTILES), strict=True)
        },
        histogram=tuple(int(c) for c in histogram),
    )


def realized_metrics(outcomes: np.ndarray, proba: np.ndarray, threshold: float) -> Realized:
    """ROC-AUC, F1, recall, precision and the confusion matrix at ``threshold``."""
    # Imported here: pipeline.metrics imports scikit-learn (~1 s of CPU), which importing this
    # package must not cost the batch job; by the time outcomes are scored the model loader has.
    from pipeline.metrics import classification_metrics, confusion

    y = np.asarray(outcomes).astype(np.int64)
    p = np.asarray(proba, dtype=np.float64)
    return realized_from_summary(
        {"rows": len(y), "metrics": classification_metrics(y, p, threshold), "confusion": confusion(y, p, threshold)}
    )


def realized_from_summary(outcome: Mapping[str, Any]) -> Realized:
    """The realized metrics from the batch summary's ``outcome`` block (rows, metrics, confusion)."""
    m, cm = outcome["metrics"], outcome["confusion"]
    return Realized(
        n=int(outcome["rows"]),
        positives=int(cm["tp"]) + int(cm["fn"]),
        roc_auc=m["roc_auc"],
        f1=m["f1"],
        recall=m["recall"],
        precision=m["precision"],
        confusion=dict(cm),
    )


def scoring_run(
    *,
    started_at: datetime,
    source: Source,
    model: ModelRef,
    input: InputSummary,
    profile: Profile,
    records: pd.DataFrame,
    proba: np.ndarray,
    threshold: float,
    outcomes: np.ndarray | None = None,
    thresholds: DriftThresholds | None = None,
    seconds: float | None = None,
) -> ScoringRun:
    """The record of one run: score distribution, drift against ``profile``, realized metrics if outcomes known.

    ``records`` are the scored rows (valid ones only), ``proba`` their probabilities, and
    ``outcomes`` their known 0/1 targets, if any (rows with an unknown outcome left out by the caller).
    """
    return ScoringRun(
        started_at=started_at,
        source=source,
        model=model,
        input=input,
        score=score_summary(proba, threshold),
        drift=drift_report(profile, records, proba, thresholds),
        realized=realized_metrics(outcomes, proba, threshold) if outcomes is not None and len(outcomes) else None,
        seconds=seconds,
    )
