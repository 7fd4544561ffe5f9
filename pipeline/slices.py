"""Metrics per slice of the test year: where the model does worse than overall.

A slice is a named subset of accidents (built-up area or not, road category, the departments
with most accidents, light, accidents with a pedestrian, a bicycle or e-scooter, a motorcycle,
single-vehicle). For each: count, severe rate, ROC-AUC, recall and precision at the model
threshold (scikit-learn metrics). A slice is flagged when its recall is more than
``RECALL_GAP`` below the overall recall and it holds at least ``MIN_COUNT`` accidents (smaller
slices are too noisy to call).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from pipeline import codebook
from pipeline.records import TARGET
from pipeline.slice_schema import SliceMetrics, SliceReport

MIN_COUNT = 200
RECALL_GAP = 0.10
TOP_DEPARTMENTS = 10
# lum codes: 1 full daylight, 2 dusk or dawn, 3-5 night (with or without street lighting).
DAY, TWILIGHT, NIGHT = (1,), (2,), (3, 4, 5)

Mask = Callable[[pd.DataFrame], "pd.Series[bool]"]


def _isin(column: str, values: tuple[Any, ...]) -> Mask:
    return lambda r: r[column].isin(values)


def _coded(column: str) -> Iterator[tuple[str, Mask]]:
    for code in sorted(codebook.allowed(column)):
        if code >= 0:
            yield codebook.label(column, code, "en"), _isin(column, (code,))


def slice_masks(records: pd.DataFrame) -> Iterator[tuple[str, str, Mask]]:
    """(group, name, mask) of every slice; the departments are the ten with most accidents here."""
    for name, mask in _coded("agg"):
        yield "Built-up area", name, mask
    for name, mask in _coded("catr"):
        yield "Road category", name, mask
    for dep in records["dep"].value_counts().head(TOP_DEPARTMENTS).index:
        yield "Department (10 with most accidents)", f"Department {dep}", _isin("dep", (dep,))
    for name, codes in (("Daylight", DAY), ("Dusk or dawn", TWILIGHT), ("Night", NIGHT)):
        yield "Light", name, _isin("lum", codes)
    yield "Road users", "With a pedestrian", lambda r: r["nb_pietons"] > 0
    yield "Road users", "With a bicycle or e-scooter", lambda r: (r["nb_velo"] + r["nb_edp"]) > 0
    yield "Road users", "With a motorcycle (> 50 cc)", lambda r: r["nb_moto"] > 0
    yield "Road users", "Single vehicle", lambda r: r["nb_vehicules"] == 1


def slice_metrics(
    group: str, name: str, y: np.ndarray, proba: np.ndarray, threshold: float, overall_recall: float
) -> SliceMetrics:
    """Metrics of one slice (None where a metric is undefined, e.g. ROC-AUC with one class)."""
    n, positives = len(y), int(y.sum())
    pred = (proba >= threshold).astype(int)
    auc = float(roc_auc_score(y, proba)) if 0 < positives < n else None
    recall = float(recall_score(y, pred, zero_division=0)) if positives else None
    precision = float(precision_score(y, pred, zero_division=0)) if pred.any() else None
    flagged = recall is not None and n >= MIN_COUNT and recall < overall_recall - RECALL_GAP
    return SliceMetrics(
        group=group,
        name=name,
        n=n,
        positives=positives,
        severe_rate=round(positives / n, 6) if n else 0.0,
        roc_auc=round(auc, 6) if auc is not None else None,
        recall=round(recall, 6) if recall is not None else None,
        precision=round(precision, 6) if precision is not None else None,
        flagged=flagged,
    )


def slice_report(records: pd.DataFrame, proba: np.ndarray, threshold: float) -> SliceReport:
    """The rules, the overall recall, the number flagged and one entry per non-empty slice.

    A DVC metrics file: ``dvc metrics show`` lists the few top-level numbers (the list of slices
    is not flattened into columns), so it still fits a terminal.
    """
    y = records[TARGET].to_numpy().astype(int)
    overall = slice_metrics("All", "All accidents", y, proba, threshold, 0.0)
    overall_recall = overall.recall or 0.0
    rows = []
    for group, name, mask in slice_masks(records):
        selected = mask(records).to_numpy(dtype=bool)
        if selected.any():
            rows.append(slice_metrics(group, name, y[selected], proba[selected], threshold, overall_recall))
    return SliceReport(
        threshold=round(float(threshold), 6),
        min_count=MIN_COUNT,
        recall_gap=RECALL_GAP,
        overall_recall=overall.recall,
        flagged=sum(r.flagged for r in rows),
        slices=rows,
    )
