"""Drift of scored records against the training profile: PSI per field, a chi-square test, a verdict.

For each record field and for the model's probabilities, the new rows are put in the
profile's buckets and compared with the training counts:

* PSI (population stability index), ``sum((q - p) * ln(q / p))`` over buckets, with each
  share floored at ``epsilon`` so that an empty bucket counts as rare, not impossible. It
  does not grow with the number of rows, which is why it drives the verdict: common practice
  reads < 0.1 as stable, 0.1-0.2 as a moderate shift, > 0.2 as a significant one.
* a chi-square test of homogeneity on the 2 x k table of training and new counts
  (as ``scipy.stats.chi2_contingency`` computes it), the same test for numbers (on their quantile buckets)
  and for codes (on their categories). Its p-value says whether a shift is more than
  sampling noise; with tens of thousands of rows nearly every field is "significant", so it
  informs and does not decide.

The verdict is the worst field status (``ok`` < ``watch`` < ``alert``), ``drivers`` the
fields with that status, largest PSI first. Fewer rows than ``min_rows`` give
``insufficient``: PSI on a handful of rows is noise.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import special

from pipeline.monitoring.profile import SCORE_FIELD, Profile
from pipeline.records import RECORD_FIELDS

Status = Literal["ok", "watch", "alert"]
Verdict = Literal["ok", "watch", "alert", "insufficient"]
_RANK: dict[str, int] = {"ok": 0, "watch": 1, "alert": 2}


class DriftThresholds(BaseModel):
    """When a PSI is worth a look (``psi_watch``) or an alert (``psi_alert``), and what the verdict counts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    psi_watch: float = Field(0.1, gt=0)
    psi_alert: float = Field(0.2, gt=0)
    epsilon: float = Field(1e-4, gt=0, lt=0.01, description="floor of a bucket's share in PSI")
    min_rows: int = Field(100, ge=1, description="fewer scored rows give the verdict 'insufficient'")
    # A new file's year always differs from the training years; the model only uses it for the weekday.
    ignore: tuple[str, ...] = ("an",)
    score_in_verdict: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> DriftThresholds:
        if self.psi_alert < self.psi_watch:
            raise ValueError(f"psi_alert {self.psi_alert} is below psi_watch {self.psi_watch}")
        return self

    def status(self, psi: float) -> Status:
        """The status of one PSI value."""
        if psi >= self.psi_alert:
            return "alert"
        if psi >= self.psi_watch:
            return "watch"
        return "ok"


class FieldDrift(BaseModel):
    """How one field moved: PSI, the test, and the bucket that moved most."""

    model_config = ConfigDict(frozen=True)

    field: str
    kind: Literal["numeric", "categorical"]
    psi: float
    test: Literal["chi2"] = "chi2"
    statistic: float
    p_value: float
    status: Status
    counted: bool  # does it count in the verdict
    top_bucket: str  # the bucket whose share moved most
    reference_share: float
    current_share: float


class DriftReport(BaseModel):
    """Drift of every record field and of the score against the training profile."""

    model_config = ConfigDict(frozen=True)

    rows: int
    reference_rows: int
    verdict: Verdict
    drivers: tuple[str, ...]
    fields: tuple[FieldDrift, ...]  # largest PSI first
    score: FieldDrift
    thresholds: DriftThresholds

    def by_field(self) -> dict[str, FieldDrift]:
        """Field name -> its drift (the score under ``proba``)."""
        return {d.field: d for d in (*self.fields, self.score)}

    def table(self) -> pd.DataFrame:
        """One row per field (the score last): the drift table logged with the run."""
        return pd.DataFrame([d.model_dump() for d in (*self.fields, self.score)])


def psi(reference: np.ndarray, current: np.ndarray, epsilon: float = 1e-4) -> float:
    """Population stability index between two count vectors over the same buckets."""
    p = np.maximum(reference / max(reference.sum(), 1), epsilon)
    q = np.maximum(current / max(current.sum(), 1), epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def chi2_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Chi-square test of homogeneity of two count vectors (buckets empty in both are dropped).

    The statistic and p-value of ``scipy.stats.chi2_contingency(table, correction=False)``
    (tests check they are equal), computed here because importing ``scipy.stats`` costs the
    batch job ~0.7 s of CPU, about its whole recording budget; ``scipy.special`` is loaded already.
    """
    table = np.vstack([reference, current]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return statistic, float(special.chdtrc(table.shape[1] - 1, statistic))


def compare(
    name: str,
    kind: Literal["numeric", "categorical"],
    labels: list[str],
    reference: np.ndarray,
    current: np.ndarray,
    thresholds: DriftThresholds,
    counted: bool,
) -> FieldDrift:
    """Drift of one field from its bucket counts."""
    value = psi(reference, current, thresholds.epsilon)
    statistic, p_value = chi2_test(reference, current)
    ref_share = reference / max(reference.sum(), 1)
    cur_share = current / max(current.sum(), 1)
    top = int(np.argmax(np.abs(cur_share - ref_share)))
    return FieldDrift(
        field=name,
        kind=kind,
        psi=round(value, 6),
        statistic=round(statistic, 4),
        p_value=p_value,
        status=thresholds.status(value),
        counted=counted,
        top_bucket=labels[top],
        reference_share=round(float(ref_share[top]), 6),
        current_share=round(float(cur_share[top]), 6),
    )


class DriftCounts:
    """Bucket counts of scored rows, added block by block: a streamed file needs no more memory than its blocks."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.rows = 0
        self.counts: dict[str, np.ndarray] = {
            name: np.zeros(len(fp.counts), dtype=np.int64) for name, fp in profile.fields.items()
        }
        self.counts[SCORE_FIELD] = np.zeros(len(profile.score.counts), dtype=np.int64)

    def add(self, records: pd.DataFrame, proba: np.ndarray) -> DriftCounts:
        """Count one block of scored records and their probabilities."""
        if len(records) != len(proba):
            raise ValueError(f"{len(records)} records but {len(proba)} probabilities")
        for spec in RECORD_FIELDS:
            self.counts[spec.name] += self.profile.fields[spec.name].bucket_counts(records[spec.name])
        self.counts[SCORE_FIELD] += self.profile.score.bucket_counts(pd.Series(np.asarray(proba, dtype=np.float64)))
        self.rows += len(records)
        return self

    def report(self, thresholds: DriftThresholds | None = None) -> DriftReport:
        """The drift of everything counted so far."""
        thresholds = thresholds or DriftThresholds()
        drifts = [
            compare(
                spec.name,
                (fp := self.profile.fields[spec.name]).kind,
                fp.labels(),
                np.asarray(fp.counts, dtype=np.int64),
                self.counts[spec.name],
                thresholds,
                spec.name not in thresholds.ignore,
            )
            for spec in RECORD_FIELDS
        ]
        sp = self.profile.score
        score = compare(
            SCORE_FIELD,
            "numeric",
            sp.labels(),
            np.asarray(sp.counts, dtype=np.int64),
            self.counts[SCORE_FIELD],
            thresholds,
            thresholds.score_in_verdict,
        )
        drifts.sort(key=lambda d: -d.psi)
        counted = [d for d in (*drifts, score) if d.counted]
        worst = max((_RANK[d.status] for d in counted), default=0)
        verdict: Verdict = "ok" if worst == 0 else "watch" if worst == 1 else "alert"
        drivers = tuple(d.field for d in sorted(counted, key=lambda d: -d.psi) if worst and _RANK[d.status] == worst)
        if self.rows < thresholds.min_rows:
            verdict, drivers = "insufficient", ()
        return DriftReport(
            rows=self.rows,
            reference_rows=self.profile.rows,
            verdict=verdict,
            drivers=drivers,
            fields=tuple(drifts),
            score=score,
            thresholds=thresholds,
        )


def drift_report(
    profile: Profile, records: pd.DataFrame, proba: np.ndarray, thresholds: DriftThresholds | None = None
) -> DriftReport:
    """Compare scored records and their probabilities with the training profile."""
    return DriftCounts(profile).add(records, proba).report(thresholds)
