"""Confusion counts and the rates built on them: light enough for the dashboard to import.

The seed project's published XGBoost numbers live here too, for the comparisons shown in
the README and on the dashboard's overview.
"""

from __future__ import annotations

from collections.abc import Mapping

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
