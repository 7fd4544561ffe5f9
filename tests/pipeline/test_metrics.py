"""pipeline.metrics: scikit-learn's metrics, reported as plain numbers, on real predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from pipeline.metrics import classification_metrics, confusion, rates, roc_auc
from pipeline.records import TARGET
from tests.conftest import Trained


def test_metrics_of_real_predictions(trained: Trained) -> None:
    y = trained.test[TARGET].to_numpy()
    proba = trained.model.predict_frame(trained.test)
    threshold = trained.model.threshold
    metrics = classification_metrics(y, proba, threshold)
    assert metrics["f1"] == round(f1_score(y, proba >= threshold), 6)
    assert metrics["precision"] == round(precision_score(y, proba >= threshold), 6)
    assert metrics["recall"] == round(recall_score(y, proba >= threshold), 6)
    assert metrics["roc_auc"] == trained.metrics["test"]["roc_auc"]
    assert metrics["n"] == len(y) and metrics["positives"] == int(y.sum())
    assert sum(confusion(y, proba, threshold).values()) == len(y)


def test_hand_computed_values() -> None:
    y = np.array([0, 0, 1, 1])
    proba = np.array([0.1, 0.4, 0.35, 0.8])
    assert roc_auc(y, proba) == pytest.approx(0.75)  # 3 of the 4 (positive, negative) pairs ranked right
    metrics = classification_metrics(y, proba, 0.5)
    assert metrics["pr_auc"] == pytest.approx(round(0.5 * 1.0 + 0.5 * 2 / 3, 6))
    assert metrics["brier"] == pytest.approx(round((0.01 + 0.16 + 0.4225 + 0.04) / 4, 6))
    assert confusion(y, proba, 0.5) == {"tn": 2, "fp": 0, "fn": 1, "tp": 1}
    assert rates({"tn": 2, "fp": 0, "fn": 1, "tp": 1}) == {
        "accuracy": 0.75,
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
    }


def test_one_class_has_no_ranking_metrics(trained: Trained) -> None:
    test = trained.test
    negatives = test[test[TARGET] == 0]
    metrics = classification_metrics(negatives[TARGET].to_numpy(), trained.model.predict_frame(negatives), 0.5)
    assert metrics["roc_auc"] is None and metrics["pr_auc"] is None
    assert metrics["positives"] == 0 and metrics["n"] == len(negatives)
