"""Stage ``train``: fit XGBoost on the training years, pick the threshold on validation.

The test years are never read here: the guard in ``check_years`` fails the stage if
any row of a test year reaches fitting, early stopping or threshold selection.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import precision_recall_curve
from sklearn.model_selection import train_test_split

from pipeline.config import MODEL_DIR, PROCESSED_DIR, ThresholdParams, TrainParams, params
from pipeline.feature_spec import FeatureSpec, fit_spec, out_of_fold_encodings
from pipeline.features import frame_matrix
from pipeline.model import Calibration, save_local
from pipeline.records import ID_COLUMN, TARGET
from pipeline.storage import write_parquet_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fitted:
    """The final booster and feature spec, with the predictions used for the threshold.

    ``valid_proba`` comes from the early-stopping model, which never saw the validation
    rows; ``fit_proba`` is the final model on the rows it was fitted on.
    """

    booster: xgb.Booster
    spec: FeatureSpec
    best_iteration: int
    fit_proba: np.ndarray
    valid_proba: np.ndarray
    seconds: float
    refit: bool


def check_years(records: pd.DataFrame, tp: TrainParams) -> None:
    """Fail if any row outside the training years is about to be used for fitting."""
    years = set(int(y) for y in pd.unique(records["an"]))
    leaked = years & set(tp.test_years)
    if leaked:
        raise ValueError(f"test-year rows {sorted(leaked)} reached training; refusing to fit")
    unexpected = years - set(tp.train_years)
    if unexpected:
        raise ValueError(f"rows from years {sorted(unexpected)} are not in train.train_years")


def split_valid(records: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the validation rows: a stratified split, one row per accident."""
    if records[ID_COLUMN].duplicated().any():
        raise ValueError("records must have one row per accident")
    index = np.arange(len(records))
    _, valid = train_test_split(index, test_size=fraction, random_state=seed, stratify=records[TARGET])
    mask = np.zeros(len(records), dtype=bool)
    mask[valid] = True
    return mask


def booster_params(tp: TrainParams) -> dict[str, Any]:
    """``xgboost.train`` parameters from params.yaml."""
    x = tp.xgb
    return {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "tree_method": "hist",
        "eta": x.learning_rate,
        "max_depth": x.max_depth,
        "min_child_weight": x.min_child_weight,
        "subsample": x.subsample,
        "colsample_bytree": x.colsample_bytree,
        "lambda": x.reg_lambda,
        "alpha": x.reg_alpha,
        "gamma": x.gamma,
        "max_bin": x.max_bin,
        "seed": tp.seed,
        "nthread": tp.n_jobs,
    }


def training_matrix(records: pd.DataFrame, tp: TrainParams, max_vma: int) -> tuple[np.ndarray, FeatureSpec]:
    """Spec fitted on ``records`` and their matrix, target encodings computed out of fold."""
    target = records[TARGET].to_numpy()
    spec = fit_spec(records, target, max_vma)
    matrix = frame_matrix(records, spec)
    for key, values in out_of_fold_encodings(records, target, tp.target_encoding_folds, tp.seed).items():
        matrix[:, spec.columns.index(f"{key}_te")] = values
    return matrix, spec


def fit(records: pd.DataFrame, valid_mask: np.ndarray, tp: TrainParams, max_vma: int) -> Fitted:
    """Early-stop on the validation rows; then, if ``refit_full``, refit on every training row.

    The refit uses the early-stopped number of trees, so the validation rows only ever
    choose the number of trees and the threshold, never the trees of the model they score.
    """
    check_years(records, tp)
    start = time.perf_counter()
    fit_rows, valid_rows = records[~valid_mask], records[valid_mask]
    x_fit, spec = training_matrix(fit_rows, tp, max_vma)
    x_valid = frame_matrix(valid_rows, spec)
    names = list(spec.columns)
    d_fit = xgb.DMatrix(x_fit, label=fit_rows[TARGET].to_numpy(), feature_names=names, nthread=tp.n_jobs)
    d_valid = xgb.DMatrix(x_valid, label=valid_rows[TARGET].to_numpy(), feature_names=names, nthread=tp.n_jobs)
    booster = xgb.train(
        booster_params(tp),
        d_fit,
        num_boost_round=tp.xgb.n_estimators,
        evals=[(d_valid, "valid")],
        early_stopping_rounds=tp.xgb.early_stopping_rounds,
        verbose_eval=False,
    )
    best = int(booster.best_iteration)
    booster = booster[: best + 1]
    valid_proba = np.asarray(booster.inplace_predict(x_valid), dtype=np.float64)
    fit_proba = np.asarray(booster.inplace_predict(x_fit), dtype=np.float64)
    if tp.refit_full:
        x_all, spec = training_matrix(records, tp, max_vma)
        d_all = xgb.DMatrix(
            x_all, label=records[TARGET].to_numpy(), feature_names=list(spec.columns), nthread=tp.n_jobs
        )
        booster = xgb.train(booster_params(tp), d_all, num_boost_round=best + 1, verbose_eval=False)
        fit_proba = np.asarray(booster.inplace_predict(x_all[~valid_mask]), dtype=np.float64)
    seconds = time.perf_counter() - start
    log.info("trained %d trees in %.1f s (refit on all training rows: %s)", best + 1, seconds, tp.refit_full)
    return Fitted(booster, spec, best, fit_proba, valid_proba, seconds, tp.refit_full)


def choose_threshold(y: np.ndarray, proba: np.ndarray, policy: ThresholdParams) -> float:
    """Decision threshold from validation data: best F1, or the highest reaching the target recall."""
    precision, recall, thresholds = precision_recall_curve(y, proba)
    precision, recall = precision[:-1], recall[:-1]
    if policy.policy == "max_f1":
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
        return float(thresholds[int(np.argmax(f1))])
    # The lowest threshold always has recall 1, so some threshold always qualifies.
    reaching = np.flatnonzero(recall >= policy.target_recall)
    return float(thresholds[reaching[-1]])


def fit_calibration(y: np.ndarray, proba: np.ndarray) -> Calibration:
    """Isotonic map from raw to calibrated probabilities, learnt on validation predictions.

    Stored as its breakpoints: ``np.interp`` over them is ``IsotonicRegression.predict``.
    """
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(proba, y)
    return Calibration(tuple(map(float, iso.X_thresholds_)), tuple(map(float, iso.y_thresholds_)))


def load_years(years: tuple[int, ...], folder: Path | None = None) -> pd.DataFrame:
    """Records of several years (from the features stage's folder by default), concatenated."""
    folder = folder or PROCESSED_DIR
    return pd.concat([pd.read_parquet(folder / f"accidents_{y}.parquet") for y in years], ignore_index=True)


def main() -> None:
    """DVC entry point: fit, choose the threshold, save the model folder and fit predictions."""
    p = params()
    tp = p.train
    records = load_years(tp.train_years)
    valid_mask = split_valid(records, tp.valid_fraction, tp.seed)
    fitted = fit(records, valid_mask, tp, p.features.max_vma)
    y_valid = records.loc[valid_mask, TARGET].to_numpy()
    fit_proba, valid_proba = fitted.fit_proba, fitted.valid_proba
    calibration = None
    if tp.calibration == "isotonic":
        calibration = fit_calibration(y_valid, valid_proba)
        fit_proba, valid_proba = calibration.apply(fit_proba), calibration.apply(valid_proba)
    # The threshold applies to the probabilities the model serves: calibrated when it is.
    threshold = choose_threshold(y_valid, valid_proba, tp.threshold)
    info = {
        "threshold": threshold,
        "threshold_policy": tp.threshold.model_dump(),
        "best_iteration": fitted.best_iteration,
        "n_trees": fitted.best_iteration + 1,
        "train_years": list(tp.train_years),
        "test_years": list(tp.test_years),
        "rows": {
            "fit": int((~valid_mask).sum()),
            "valid": int(valid_mask.sum()),
            "final_model": len(records) if fitted.refit else int((~valid_mask).sum()),
        },
        "refit_full": fitted.refit,
        "calibration": tp.calibration,
    }
    save_local(MODEL_DIR, fitted.booster, fitted.spec, info, calibration)
    predictions = pd.DataFrame(
        {
            ID_COLUMN: np.concatenate([records.loc[~valid_mask, ID_COLUMN], records.loc[valid_mask, ID_COLUMN]]),
            "split": ["train"] * int((~valid_mask).sum()) + ["valid"] * int(valid_mask.sum()),
            TARGET: np.concatenate([records.loc[~valid_mask, TARGET], y_valid]),
            "proba": np.concatenate([fit_proba, valid_proba]),
        }
    )
    write_parquet_atomic(predictions, MODEL_DIR / "fit_predictions.parquet")
    log.info("threshold %.4f (%s)", threshold, tp.threshold.policy)


if __name__ == "__main__":
    from pipeline.cli import run_stage

    run_stage(main)
