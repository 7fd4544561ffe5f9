"""Classification metrics in numpy alone: light enough for the dashboard and the batch job to import.

``evaluate`` reports these numbers and the batch job's summary recomputes them, so they match
by construction; tests/test_metrics.py checks them against scikit-learn.

The seed project's published XGBoost numbers live here too, for the comparisons shown in
the README and on the dashboard's overview.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

SEED_PROJECT = {"accuracy": 0.791, "precision": 0.726, "recall": 0.631, "f1": 0.675}


def confusion(y: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, int]:
    """Counts of the confusion matrix at a threshold."""
    pred = proba >= threshold
    y = y.astype(bool)
    return {
        "tn": int((~pred & ~y).sum()),
        "fp": int((pred & ~y).sum()),
        "fn": int((~pred & y).sum()),
        "tp": int((pred & y).sum()),
    }


def rates(cm: Mapping[str, int]) -> dict[str, float]:
    """Accuracy, precision, recall and F1 from confusion counts."""
    tp, fp, fn, tn = cm["tp"], cm["fp"], cm["fn"], cm["tn"]
    total = tp + fp + fn + tn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": (tp + tn) / total if total else 0.0, "precision": precision, "recall": recall, "f1": f1}


def _ranked_counts(y: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives above each distinct score, highest score first."""
    order = np.argsort(proba, kind="mergesort")[::-1]
    scores = proba[order]
    truth = y[order].astype(np.float64)
    # The last row of each run of equal scores: ties move together, as in scikit-learn.
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(truth)[last]
    fps = 1 + last - tps
    return tps, fps


def roc_auc(y: np.ndarray, proba: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids between distinct scores: ties count half)."""
    tps, fps = _ranked_counts(y, proba)
    tpr = np.r_[0.0, tps] / tps[-1]
    fpr = np.r_[0.0, fps] / fps[-1]
    return float(np.trapezoid(tpr, fpr))


def average_precision(y: np.ndarray, proba: np.ndarray) -> float:
    """Average precision: precision at each distinct score, weighted by the recall it adds."""
    tps, fps = _ranked_counts(y, proba)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def brier(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean squared difference between the probability and the outcome."""
    return float(np.mean((y.astype(np.float64) - proba) ** 2))


def classification_metrics(y: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, Any]:
    """Every metric the project reports, as plain numbers (the ranking ones need both classes)."""
    cm = confusion(y, proba, threshold)
    both = len(np.unique(y)) == 2
    return {
        **{k: round(v, 6) for k, v in rates(cm).items()},
        "roc_auc": round(roc_auc(y, proba), 6) if both else None,
        "pr_auc": round(average_precision(y, proba), 6) if both else None,
        "brier": round(brier(y, proba), 6),
        "threshold": round(float(threshold), 6),
        "n": len(y),
        "positives": int(np.sum(y)),
    }
