"""The classification metrics the project reports, from scikit-learn's functions.

``evaluate`` reports these numbers and the batch job's summary recomputes them with the same
function, so they match by construction.

The seed project's published XGBoost numbers live here too, for the comparisons shown in
the README and on the dashboard's overview.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, confusion_matrix, roc_auc_score

from pipeline.calibration import calibration_report

SEED_PROJECT = {"accuracy": 0.791, "precision": 0.726, "recall": 0.631, "f1": 0.675}


def confusion(y: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, int]:
    """Counts of the confusion matrix at a threshold (predicted severe when ``proba >= threshold``)."""
    tn, fp, fn, tp = confusion_matrix(np.asarray(y).astype(bool), proba >= threshold, labels=[False, True]).ravel()
    return {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}


def confusion_counts(y: np.ndarray, proba: np.ndarray, thresholds: np.ndarray) -> pd.DataFrame:
    """``confusion`` at many thresholds at once: one row per threshold, columns tn, fp, fn, tp.

    Counted from the sorted scores of each class (``proba >= t`` is a suffix of them), the same
    integers as ``confusion`` at each threshold without a pass over the rows per threshold.
    """
    actual = np.asarray(y).astype(bool)
    scores = np.asarray(proba)
    positives, negatives = np.sort(scores[actual]), np.sort(scores[~actual])
    tp = len(positives) - np.searchsorted(positives, thresholds, side="left")
    fp = len(negatives) - np.searchsorted(negatives, thresholds, side="left")
    return pd.DataFrame({"tn": len(negatives) - fp, "fp": fp, "fn": len(positives) - tp, "tp": tp}).astype(int)


def rates(cm: Mapping[str, int]) -> dict[str, float]:
    """Accuracy, precision, recall and F1 from confusion counts (0 when undefined: zero_division=0)."""
    tp, fp, fn, tn = cm["tp"], cm["fp"], cm["fn"], cm["tn"]
    total = tp + fp + fn + tn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": (tp + tn) / total if total else 0.0, "precision": precision, "recall": recall, "f1": f1}


def roc_auc(y: np.ndarray, proba: np.ndarray) -> float:
    """Area under the ROC curve (scikit-learn's), as a float."""
    return float(roc_auc_score(y, proba))


def classification_metrics(y: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, Any]:
    """Every metric the project reports, as plain numbers (the ranking ones need both classes)."""
    cm = confusion(y, proba, threshold)
    both = len(np.unique(y)) == 2
    return {
        **{k: round(v, 6) for k, v in rates(cm).items()},
        "roc_auc": round(roc_auc(y, proba), 6) if both else None,
        "pr_auc": round(float(average_precision_score(y, proba)), 6) if both else None,
        "brier": round(float(brier_score_loss(y, proba)), 6),
        "ece": calibration_report(np.asarray(y), np.asarray(proba))[1],
        "threshold": round(float(threshold), 6),
        "n": len(y),
        "positives": int(np.sum(y)),
    }
