"""The evaluate stage's vectorised counts give exactly what the per-item definitions give."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.evaluate import threshold_table
from pipeline.metrics import confusion, confusion_counts, rates
from pipeline.places import modal_dep
from pipeline.records import TARGET
from tests.conftest import Trained


def test_confusion_counts_are_confusion_at_each_threshold(trained: Trained) -> None:
    y = trained.test[TARGET].to_numpy()
    proba = trained.model.predict_frame(trained.test)
    # The grid of the thresholds table, plus scores themselves: a score equal to t counts as severe.
    thresholds = np.concatenate([np.round(np.arange(0, 1.005, 0.01), 4), proba[:50], [0.0, 1.0]])
    counts = confusion_counts(y, proba, thresholds)
    for t, row in zip(thresholds, counts.to_dict("records"), strict=True):
        assert row == confusion(y, proba, float(t))


def test_threshold_table_rows_are_confusion_and_rates(trained: Trained) -> None:
    y = trained.test[TARGET].to_numpy()
    proba = trained.model.predict_frame(trained.test)
    table = threshold_table(y, proba)
    assert len(table) == 101
    for row in table.to_dict("records"):
        cm = confusion(y, proba, row["threshold"])
        assert row == {"threshold": row["threshold"], **cm, **rates(cm)}


def test_modal_dep_is_each_communes_mode(records: dict[int, pd.DataFrame]) -> None:
    known = pd.concat([records[2020], records[2021]], ignore_index=True).dropna(subset=["com"])
    expected = known.groupby("com", sort=True)["dep"].agg(lambda s: s.mode().iloc[0])
    pd.testing.assert_series_equal(modal_dep(known), expected, check_names=False)
