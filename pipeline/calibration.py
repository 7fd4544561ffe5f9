"""Calibration: does a predicted 30 % mean that 30 % of such accidents were severe?

The reliability table bins the predictions into deciles of the predicted probability (equal
counts, so every point rests on the same number of accidents) and compares, in each bin, the
mean predicted probability with the observed severe rate. The expected calibration error (ECE)
is the count-weighted mean of the gaps: 0.02 means predictions are off by 2 points on average.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BINS = 10


def reliability_table(y: np.ndarray, proba: np.ndarray, bins: int = BINS) -> pd.DataFrame:
    """One row per quantile bin: ``bin``, ``n``, ``predicted`` (mean proba), ``observed`` (severe rate).

    Ties at a bin edge stay together, so a model with few distinct scores gives fewer bins.
    """
    if len(y) == 0:
        return pd.DataFrame({"bin": [], "n": [], "predicted": [], "observed": []})
    edges = np.unique(np.quantile(proba, np.linspace(0, 1, bins + 1)))
    # Inner edges only, as scikit-learn's calibration_curve: a score equal to an edge joins the lower bin.
    index = np.searchsorted(edges[1:-1], proba, side="left")
    frame = pd.DataFrame({"bin": index, "proba": proba, "y": y.astype(np.float64)})
    table = frame.groupby("bin", sort=True).agg(n=("y", "size"), predicted=("proba", "mean"), observed=("y", "mean"))
    table = table.reset_index()
    table["bin"] = np.arange(1, len(table) + 1)
    return table


def expected_calibration_error(table: pd.DataFrame) -> float:
    """Count-weighted mean absolute gap between predicted and observed rates of a reliability table."""
    n = table["n"].sum()
    if not n:
        return 0.0
    return float((table["n"] * (table["predicted"] - table["observed"]).abs()).sum() / n)


def calibration_report(y: np.ndarray, proba: np.ndarray, bins: int = BINS) -> tuple[pd.DataFrame, float]:
    """The reliability table and its ECE."""
    table = reliability_table(y, proba, bins)
    return table, round(expected_calibration_error(table), 6)
