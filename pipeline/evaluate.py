"""Stage ``evaluate``: metrics per split, calibration, slices, DVC plots, test predictions and tables.

It also writes what the API serves about the training data: each commune's centre
(``places.csv``) and a typical real accident (``scenario.json``) for the dashboard's What-if.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

from pipeline.calibration import calibration_report
from pipeline.config import MODEL_DIR, REPORTS_DIR, params
from pipeline.metrics import classification_metrics, confusion, confusion_counts, rates
from pipeline.model import LoadedModel, load_local
from pipeline.places import commune_centres, typical_accident
from pipeline.records import ID_COLUMN, TARGET
from pipeline.slice_schema import SliceReport
from pipeline.slices import slice_report
from pipeline.storage import atomic_path, write_json_atomic, write_parquet_atomic
from pipeline.train import load_years

log = logging.getLogger(__name__)


def threshold_table(y: np.ndarray, proba: np.ndarray, step: float = 0.01) -> pd.DataFrame:
    """Confusion counts and rates at every threshold from 0 to 1 by ``step``."""
    thresholds = np.round(np.arange(0, 1 + step / 2, step), 4)
    counts = confusion_counts(y, proba, thresholds)
    rows = []
    for t, cm in zip(thresholds, counts.to_dict("records"), strict=True):
        rows.append({"threshold": float(t), **cm, **rates(cm)})
    return pd.DataFrame(rows)


def curve_points(y: np.ndarray, proba: np.ndarray, points: int = 201) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ROC and PR curves, thinned to about ``points`` rows each."""
    fpr, tpr, roc_t = roc_curve(y, proba)
    precision, recall, pr_t = precision_recall_curve(y, proba)
    roc = pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.clip(roc_t, 0, 1)})
    pr = pd.DataFrame({"recall": recall[:-1], "precision": precision[:-1], "threshold": pr_t})

    def thin(frame: pd.DataFrame) -> pd.DataFrame:
        idx = np.unique(np.linspace(0, len(frame) - 1, min(points, len(frame))).astype(int))
        return frame.iloc[idx].reset_index(drop=True)

    return thin(roc), thin(pr)


def feature_importance(model: LoadedModel) -> pd.DataFrame:
    """Total gain per feature, largest first."""
    gain = model.booster.get_score(importance_type="total_gain")
    frame = pd.DataFrame({"feature": list(model.spec.columns)})
    frame["gain"] = frame["feature"].map(gain).fillna(0.0)
    frame["share"] = frame["gain"] / frame["gain"].sum()
    return frame.sort_values("gain", ascending=False, ignore_index=True)


def _save_png(fig: Any, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_confusion(cm: Mapping[str, int], dest: Path, title: str) -> None:
    """Confusion matrix heatmap with counts and row rates."""
    grid = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(grid, cmap="Blues")
    for i in range(2):
        for j in range(2):
            share = grid[i, j] / max(grid[i].sum(), 1)
            ax.text(
                j,
                i,
                f"{grid[i, j]:,}\n{share:.1%}",
                ha="center",
                va="center",
                color="white" if grid[i, j] > grid.max() / 2 else "black",
            )
    ax.set_xticks([0, 1], ["not severe", "severe"])
    ax.set_yticks([0, 1], ["not severe", "severe"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    _save_png(fig, dest)


def plot_curve(frame: pd.DataFrame, x: str, y: str, dest: Path, title: str) -> None:
    """A line plot of one curve."""
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(frame[x], frame[y])
    if x == "fpr":
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title)
    _save_png(fig, dest)


def plot_importance(importance: pd.DataFrame, dest: Path, top: int = 20) -> None:
    """Horizontal bars of the top features by gain."""
    head = importance.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.barh(head["feature"], head["share"])
    ax.set_xlabel("share of total gain")
    ax.set_title(f"Top {top} features")
    _save_png(fig, dest)


def plot_reliability(tables: Mapping[str, pd.DataFrame], dest: Path, ece: Mapping[str, float]) -> None:
    """Observed severe rate against mean predicted probability per decile, one line per split."""
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    for split, table in tables.items():
        ax.plot(table["predicted"], table["observed"], marker="o", label=f"{split} (ECE {ece[split]:.3f})")
    ax.set_xlabel("mean predicted probability (decile)")
    ax.set_ylabel("observed severe rate")
    ax.set_title("Reliability diagram")
    ax.legend(loc="upper left")
    _save_png(fig, dest)


def calibration_tables(
    fit_predictions: pd.DataFrame, y_test: np.ndarray, test_proba: np.ndarray
) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """Reliability tables of the validation and test splits, and their ECE."""
    valid = fit_predictions[fit_predictions["split"] == "valid"]
    tables, ece = {}, {}
    for split, y, proba in (
        ("valid", valid[TARGET].to_numpy(), valid["proba"].to_numpy()),
        ("test", y_test, test_proba),
    ):
        tables[split], ece[split] = calibration_report(y, proba)
    return tables, ece


def write_training_places(train: pd.DataFrame, out: Path) -> None:
    """Commune centres and the typical accident of the training years."""
    with atomic_path(out / "places.csv") as tmp:
        commune_centres(train).to_csv(tmp, index=False)
    write_json_atomic(typical_accident(train), out / "scenario.json")


# The numbers `dvc metrics show` and `dvc exp show` compare: few enough to fit a terminal. Every
# metric of every split stays in metrics.json, and every slice in slices.json.
HEADLINE_TEST: tuple[str, ...] = ("roc_auc", "f1", "precision", "recall", "ece")


def headline(metrics: Mapping[str, Mapping[str, Any]], slices: SliceReport) -> dict[str, Any]:
    """The headline metrics: the test year's, and how many slices are flagged."""
    return {
        "test": {key: metrics["test"][key] for key in HEADLINE_TEST},
        "slices_flagged": slices.flagged,
    }


def write_reports(
    model: LoadedModel,
    fit_predictions: pd.DataFrame,
    test: pd.DataFrame,
    out: Path = REPORTS_DIR,
    train: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Compute and write every evaluation output; returns the metrics.

    ``train`` (the training years' records) adds the commune centres and the typical accident.
    """
    threshold = model.threshold
    test_proba = model.predict_frame(test)
    y_test = test[TARGET].to_numpy()
    metrics: dict[str, Any] = {}
    for split in ("train", "valid"):
        part = fit_predictions[fit_predictions["split"] == split]
        metrics[split] = classification_metrics(part[TARGET].to_numpy(), part["proba"].to_numpy(), threshold)
    metrics["test"] = classification_metrics(y_test, test_proba, threshold)
    # The same ECE as classification_metrics gives (one definition), with the tables for the plots.
    calibration, ece = calibration_tables(fit_predictions, y_test, test_proba)
    write_json_atomic(metrics, out / "metrics.json")
    slices = slice_report(test, test_proba, threshold)
    write_json_atomic(slices.model_dump(mode="json"), out / "slices.json")
    write_json_atomic(headline(metrics, slices), out / "headline.json")
    if train is not None:
        write_training_places(train, out)

    plots = out / "plots"
    for split, table in calibration.items():
        with atomic_path(plots / f"calibration_{split}.csv") as tmp:
            table.to_csv(tmp, index=False)
    plot_reliability(calibration, plots / "calibration.png", ece)
    pred = (test_proba >= threshold).astype(int)
    label = np.array(["not severe", "severe"])
    confusion_rows = pd.DataFrame({"actual": label[y_test], "predicted": label[pred]})
    with atomic_path(plots / "confusion.csv") as tmp:
        confusion_rows.to_csv(tmp, index=False)
    roc, pr = curve_points(y_test, test_proba)
    for name, frame in (("roc", roc), ("pr", pr)):
        with atomic_path(plots / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=False)
    table = threshold_table(y_test, test_proba)
    with atomic_path(out / "thresholds.csv") as tmp:
        table.to_csv(tmp, index=False)
    importance = feature_importance(model)
    with atomic_path(out / "feature_importance.csv") as tmp:
        importance.to_csv(tmp, index=False)
    cm = confusion(y_test, test_proba, threshold)
    plot_confusion(cm, plots / "confusion.png", f"Test year, threshold {threshold:.3f}")
    plot_curve(roc, "fpr", "tpr", plots / "roc.png", f"ROC (AUC {metrics['test']['roc_auc']:.3f})")
    plot_curve(pr, "recall", "precision", plots / "pr.png", f"PR (AP {metrics['test']['pr_auc']:.3f})")
    plot_importance(importance, plots / "feature_importance.png")
    predictions = pd.DataFrame(
        {ID_COLUMN: test[ID_COLUMN].to_numpy(), "an": test["an"].to_numpy(), TARGET: y_test, "proba": test_proba}
    )
    write_parquet_atomic(predictions, out / "predictions_test.parquet")
    return metrics


def main() -> None:
    """DVC entry point."""
    tp = params().train
    model = load_local(MODEL_DIR, n_jobs=tp.n_jobs)
    fit_predictions = pd.read_parquet(MODEL_DIR / "fit_predictions.parquet")
    test = load_years(tp.test_years)
    train = load_years(tp.train_years)
    metrics = write_reports(model, fit_predictions, test, out=REPORTS_DIR, train=train)
    t = metrics["test"]
    log.info(
        "test: roc_auc %.4f pr_auc %.4f f1 %.4f precision %.4f recall %.4f ece %.4f (valid ece %.4f)",
        t["roc_auc"],
        t["pr_auc"],
        t["f1"],
        t["precision"],
        t["recall"],
        t["ece"],
        metrics["valid"]["ece"],
    )


if __name__ == "__main__":
    from pipeline.cli import run_stage

    run_stage(main)
