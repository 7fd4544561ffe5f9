"""The shape of the slice report: written by ``evaluate`` (``slices.json``), served by the API.

Plain pydantic, no scientific imports, so the API's response models (and the dashboard that
reads them) can use it without loading scikit-learn.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SliceMetrics(BaseModel):
    """Test-year metrics of one slice at the model threshold (null where undefined)."""

    model_config = ConfigDict(frozen=True)

    group: str
    name: str
    n: int
    positives: int
    severe_rate: float
    roc_auc: float | None
    recall: float | None
    precision: float | None
    flagged: bool = Field(description="Recall more than ``recall_gap`` below overall, on at least ``min_count``.")


class SliceReport(BaseModel):
    """Where the model does worse than overall."""

    model_config = ConfigDict(frozen=True)

    threshold: float
    min_count: int
    recall_gap: float
    overall_recall: float | None = Field(description="Recall on the whole test year at the threshold.")
    flagged: int = Field(description="Number of flagged slices.")
    slices: list[SliceMetrics]
