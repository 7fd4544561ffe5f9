"""pipeline.metrics (numpy only) against scikit-learn's definitions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, f1_score, roc_auc_score

from pipeline.metrics import average_precision, brier, classification_metrics, roc_auc
from pipeline.records import TARGET
from tests.conftest import Trained


def test_metrics_equal_sklearn_on_real_predictions(trained: Trained) -> None:
    y = trained.test[TARGET].to_numpy()
    proba = trained.model.predict_frame(trained.test)
    assert roc_auc(y, proba) == pytest.approx(roc_auc_score(y, proba), abs=1e-12)
    assert average_precision(y, proba) == pytest.approx(average_precision_score(y, proba), abs=1e-12)
    assert brier(y, proba) == pytest.approx(brier_score_loss(y, proba), abs=1e-12)
    metrics = classification_metrics(y, proba, trained.model.threshold)
    assert metrics["f1"] == round(f1_score(y, proba >= trained.model.threshold), 6)
    assert metrics["roc_auc"] == trained.metrics["test"]["roc_auc"]


@pytest.mark.parametrize("decimals", [1, 2, 3])
def test_ties_count_as_in_sklearn(trained: Trained, decimals: int) -> None:
    """Scores rounded to a few decimals: long runs of ties, which both curves must step over together."""
    y = trained.test[TARGET].to_numpy()
    proba = np.round(trained.model.predict_frame(trained.test), decimals)
    assert roc_auc(y, proba) == pytest.approx(roc_auc_score(y, proba), abs=1e-12)
    assert average_precision(y, proba) == pytest.approx(average_precision_score(y, proba), abs=1e-12)


def test_hand_computed_values() -> None:
    y = np.array([0, 0, 1, 1])
    proba = np.array([0.1, 0.4, 0.35, 0.8])
    assert roc_auc(y, proba) == pytest.approx(0.75)  # 3 of the 4 (positive, negative) pairs ranked right
    assert average_precision(y, proba) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    assert brier(y, proba) == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)


def test_one_class_has_no_ranking_metrics(trained: Trained) -> None:
    test = trained.test
    negatives = test[test[TARGET] == 0]
    metrics = classification_metrics(negatives[TARGET].to_numpy(), trained.model.predict_frame(negatives), 0.5)
    assert metrics["roc_auc"] is None and metrics["pr_auc"] is None
    assert metrics["positives"] == 0 and metrics["n"] == len(negatives)
