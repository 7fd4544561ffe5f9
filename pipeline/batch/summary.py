"""Running counts of a scoring run, the reject policy, and the JSON summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.batch.batches import Batch
from pipeline.batch.inputs import FlatSource, Source, input_files, source_name
from pipeline.batch.limits import clipped
from pipeline.errors import InputError

if TYPE_CHECKING:
    from pipeline.model import LoadedModel

DEFAULT_MAX_REJECT_RATE = 0.01
QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)


@dataclass
class Tally:
    """Running totals of a scoring run."""

    input_rows: int = 0
    rejected_rows: int = 0
    rejected_cells: int = 0
    predicted_severe: int = 0
    first_reject: dict[str, Any] | None = None
    proba: list[np.ndarray] = field(default_factory=list)
    outcome: list[np.ndarray] = field(default_factory=list)
    has_outcome: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, batch: Batch) -> None:
        """Count one batch."""
        self.input_rows += batch.input_rows
        self.rejected_rows += batch.rejected_rows
        self.rejected_cells += len(batch.rejects)
        self.predicted_severe += int(batch.label.sum())
        self.proba.append(batch.proba)
        self.has_outcome |= batch.outcome is not None
        self.outcome.append(batch.outcome if batch.outcome is not None else np.full(len(batch.proba), np.nan))
        for key, seconds in batch.timings.items():
            self.add_time(key, seconds)
        if len(batch.rejects) and self.first_reject is None:
            first = batch.rejects.iloc[0].to_dict()
            first["file"] = batch.files.get(str(first["column"]), batch.file)
            self.first_reject = first

    def add_time(self, key: str, seconds: float) -> None:
        """Add seconds to one of the run's timings."""
        self.timings[key] = self.timings.get(key, 0.0) + seconds

    def scores(self) -> np.ndarray:
        """Every probability so far."""
        return np.concatenate(self.proba) if self.proba else np.array([], dtype=np.float64)

    def outcomes(self) -> np.ndarray:
        """The truth aligned with ``scores()`` (NaN when unknown)."""
        return np.concatenate(self.outcome) if self.outcome else np.array([], dtype=np.float64)


def check_policy(tally: Tally, max_reject_rate: float, source: Source) -> None:
    """Fail when the input has no rows, or more than ``max_reject_rate`` of its rows were rejected."""
    if tally.input_rows == 0:
        raise InputError("header but no data rows", file=source_name(source), rows=[2])
    rate = tally.rejected_rows / tally.input_rows
    if rate > max_reject_rate and tally.first_reject is not None:
        first = tally.first_reject
        value = (
            f" {clipped(str(first['value']))!r}:"
            if first["value"] not in ("", None) and not pd.isna(first["value"])
            else ""
        )
        raise InputError(
            f"{tally.rejected_rows} of {tally.input_rows} rows rejected ({rate:.2%} > --max-reject-rate "
            f"{max_reject_rate:.2%}); first:{value} {first['reason']}",
            file=first["file"],
            column=str(first["column"]) or None,
            rows=[int(first["line"])],
        )


def score_distribution(proba: np.ndarray) -> dict[str, Any]:
    """Mean, quantiles and a 10-bin histogram of the probabilities."""
    counts, edges = np.histogram(proba, bins=10, range=(0.0, 1.0))
    values = np.quantile(proba, QUANTILES) if len(proba) else [None] * len(QUANTILES)
    return {
        "mean": round(float(proba.mean()), 6) if len(proba) else None,
        "quantiles": {
            str(q): None if v is None else round(float(v), 6) for q, v in zip(QUANTILES, values, strict=True)
        },
        "histogram": {"edges": [round(float(e), 6) for e in edges], "counts": [int(c) for c in counts]},
    }


def outcome_metrics(y: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, Any] | None:
    """Metrics and confusion matrix against the known outcomes, with ``evaluate``'s functions."""
    # Imported here: scikit-learn costs ~1 s of CPU to import, which at the top would delay the
    # start of every run; by now the model's loader has imported it (XGBoost does) in its thread.
    from pipeline.metrics import classification_metrics, confusion

    known = ~np.isnan(y)
    if not known.any():
        return None
    truth = y[known].astype(np.int64)
    return {
        "rows": int(known.sum()),
        "metrics": classification_metrics(truth, proba[known], threshold),
        "confusion": confusion(truth, proba[known], threshold),
    }


def run_summary(
    tally: Tally,
    source: Source,
    model: LoadedModel,
    scored_at: pd.Timestamp,
    max_reject_rate: float,
    total_seconds: float,
) -> dict[str, Any]:
    """The JSON summary of a scoring run."""
    proba = tally.scores()
    timings = {k: round(v, 3) for k, v in sorted(tally.timings.items())}
    timings["total"] = round(total_seconds, 3)
    summary: dict[str, Any] = {
        "scored_at": scored_at.isoformat(),
        "input": {"kind": "flat" if isinstance(source, FlatSource) else "raw", "files": input_files(source)},
        "counts": {
            "input_rows": tally.input_rows,
            "scored": len(proba),
            "rejected": tally.rejected_rows,
            "rejected_cells": tally.rejected_cells,
            "predicted_severe": tally.predicted_severe,
        },
        "reject_rate": round(tally.rejected_rows / tally.input_rows, 6) if tally.input_rows else None,
        "max_reject_rate": max_reject_rate,
        "scores": score_distribution(proba),
        "model": {**model.describe(), "source": model.source},
        "timings_s": timings,
    }
    if isinstance(source, FlatSource):
        summary["input"].update(separator=source.separator, encoding=source.encoding)
    if tally.has_outcome:
        summary["outcome"] = outcome_metrics(tally.outcomes(), proba, model.threshold)
    return summary
