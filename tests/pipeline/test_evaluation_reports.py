"""Calibration, slices and the training places written by ``evaluate``, on the real extracts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import recall_score, roc_auc_score

from pipeline.calibration import calibration_report, expected_calibration_error, reliability_table
from pipeline.places import commune_centres, typical_accident
from pipeline.records import ID_COLUMN, RECORD_COLUMNS, TARGET
from pipeline.slices import MIN_COUNT, RECALL_GAP, slice_report
from tests.conftest import Trained


def test_reliability_table_matches_scikit_learn(trained: Trained) -> None:
    y = trained.test[TARGET].to_numpy()
    proba = trained.model.predict_frame(trained.test)
    table = reliability_table(y, proba, bins=10)
    observed, predicted = calibration_curve(y, proba, n_bins=10, strategy="quantile")
    # scikit-learn drops empty bins the same way; with distinct scores both give ten deciles.
    assert len(table) == len(observed)
    np.testing.assert_allclose(table["observed"], observed, atol=1e-9)
    np.testing.assert_allclose(table["predicted"], predicted, atol=1e-9)
    assert table["n"].sum() == len(y)
    assert table["n"].max() - table["n"].min() <= len(y) * 0.02


def test_ece_is_the_weighted_gap() -> None:
    table = pd.DataFrame({"n": [10, 30], "predicted": [0.2, 0.6], "observed": [0.1, 0.7]})
    assert expected_calibration_error(table) == pytest.approx(0.1)
    y = np.array([0, 1, 0, 1])
    _, ece = calibration_report(y, np.array([0.0, 1.0, 0.0, 1.0]), bins=2)
    assert ece == 0.0


def test_evaluate_writes_calibration_and_ece(trained: Trained) -> None:
    metrics = json.loads((trained.reports / "metrics.json").read_text())
    y = trained.test[TARGET].to_numpy()
    _, ece = calibration_report(y, trained.model.predict_frame(trained.test))
    assert metrics["test"]["ece"] == ece
    assert 0 <= metrics["valid"]["ece"] < 0.5
    for split in ("valid", "test"):
        table = pd.read_csv(trained.reports / "plots" / f"calibration_{split}.csv")
        assert list(table.columns) == ["bin", "n", "predicted", "observed"]
        assert expected_calibration_error(table) == pytest.approx(metrics[split]["ece"], abs=1e-6)
    assert (trained.reports / "plots" / "calibration.png").stat().st_size > 0


def test_slices_match_scikit_learn_and_flag_by_the_rule(trained: Trained) -> None:
    test = trained.test
    proba = trained.model.predict_frame(test)
    threshold = trained.model.threshold
    report = slice_report(test, proba, threshold).model_dump(mode="json")
    assert report == json.loads((trained.reports / "slices.json").read_text())
    y = test[TARGET].to_numpy()
    pred = (proba >= threshold).astype(int)
    assert report["overall_recall"] == pytest.approx(recall_score(y, pred), abs=1e-6)
    assert report["flagged"] == sum(r["flagged"] for r in report["slices"])
    rows = {(r["group"], r["name"]): r for r in report["slices"]}
    inside = rows[("Built-up area", "Inside built-up area")]
    mask = (test["agg"] == 2).to_numpy()
    assert inside["n"] == int(mask.sum())
    assert inside["roc_auc"] == pytest.approx(roc_auc_score(y[mask], proba[mask]), abs=1e-6)
    assert sum(r["n"] for (g, _), r in rows.items() if g == "Built-up area") == len(test)
    single = rows[("Road users", "Single vehicle")]
    assert single["n"] == int((test["nb_vehicules"] == 1).sum())
    departments = [r for (g, _), r in rows.items() if g.startswith("Department")]
    assert len(departments) == min(10, test["dep"].nunique())
    floor = report["overall_recall"] - RECALL_GAP
    for r in report["slices"]:
        expected = r["recall"] is not None and r["n"] >= MIN_COUNT and r["recall"] < floor
        assert r["flagged"] == expected, r


def test_typical_accident_is_a_real_complete_training_accident(records: dict[int, pd.DataFrame]) -> None:
    train = records[2020]
    scenario = typical_accident(train)
    row = train[train[ID_COLUMN].astype(str) == scenario["accident_id"]]
    assert len(row) == 1
    assert scenario["com"] == train["com"].value_counts().idxmax()
    for column in RECORD_COLUMNS:
        value = row.iloc[0][column]
        assert scenario["record"][column] == (None if pd.isna(value) else value), column
    assert scenario["record"]["lat"] is not None and scenario["record"]["com"] == scenario["com"]
    assert scenario["unknown_fields"] == 0


def test_commune_centres_are_medians_of_the_training_accidents(records: dict[int, pd.DataFrame]) -> None:
    train = records[2020]
    centres = commune_centres(train).set_index("com")
    assert centres["accidents"].sum() == train["com"].notna().sum()
    com = train["com"].value_counts().idxmax()
    local = train[train["com"] == com]
    assert centres.loc[com, "lat"] == pytest.approx(local["lat"].median(), abs=1e-5)
    assert centres.loc[com, "dep"] == local["dep"].iloc[0]
