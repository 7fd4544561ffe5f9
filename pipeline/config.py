"""Paths and experiment parameters.

Experiment knobs live only in ``params.yaml``; they are read into frozen pydantic
models with ``extra="forbid"`` so that a typo in the file fails loudly.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

ROOT = Path(__file__).resolve().parent.parent
PARAMS_FILE = ROOT / "params.yaml"

DATA_DIR = ROOT / "data"
BUNDLED_DIR = DATA_DIR / "bundled" / "baac"
CACHE_DIR = DATA_DIR / "cache" / "datagouv"
INTERIM_DIR = DATA_DIR / "interim"
PROCESSED_DIR = DATA_DIR / "processed"
DATA_REPORTS_DIR = DATA_DIR / "reports"
PREDICTIONS_DIR = DATA_DIR / "predictions"
REPORTS_DIR = ROOT / "reports"
PLOTS_DIR = REPORTS_DIR / "plots"
MODEL_DIR = ROOT / "models"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IngestParams(_Frozen):
    """Which years to read and from where."""

    source: Literal["bundled", "datagouv"] = "bundled"
    years: tuple[int, ...] = (2020, 2021)


class ValidateParams(_Frozen):
    """Failure budgets: a check may fail on at most this share of rows."""

    max_failure_rate: float = Field(0.001, ge=0, le=1)
    max_failures: int = Field(0, ge=0)
    examples_per_check: int = Field(5, ge=0)


class FeaturesParams(_Frozen):
    """Feature-building knobs."""

    max_vma: int = Field(130, gt=0)


class ThresholdParams(_Frozen):
    """How the decision threshold is chosen on the validation split."""

    policy: Literal["max_f1", "target_recall"] = "max_f1"
    target_recall: float = Field(0.8, gt=0, lt=1)


class XGBParams(_Frozen):
    """XGBoost hyperparameters (names as in ``xgboost.train``)."""

    n_estimators: int = Field(2000, gt=0)
    learning_rate: float = Field(0.05, gt=0)
    max_depth: int = Field(6, ge=0)
    min_child_weight: float = Field(1.0, ge=0)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    reg_lambda: float = Field(1.0, ge=0)
    reg_alpha: float = Field(0.0, ge=0)
    gamma: float = Field(0.0, ge=0)
    max_bin: int = Field(256, gt=1)
    early_stopping_rounds: int = Field(100, gt=0)


class TrainParams(_Frozen):
    """Split, seed and model hyperparameters."""

    train_years: tuple[int, ...] = (2020,)
    test_years: tuple[int, ...] = (2021,)
    valid_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = 42
    n_jobs: int = Field(2, ge=1)
    target_encoding_folds: int = Field(5, ge=2)
    refit_full: bool = True
    # Isotonic calibration of the probabilities, fitted on the validation split's predictions
    # and carried with the model: every serving path applies it.
    calibration: Literal["none", "isotonic"] = "none"
    threshold: ThresholdParams = ThresholdParams()
    xgb: XGBParams = XGBParams()

    @model_validator(mode="after")
    def _disjoint(self) -> TrainParams:
        overlap = set(self.train_years) & set(self.test_years)
        if overlap:
            raise ValueError(f"train.train_years and train.test_years overlap: {sorted(overlap)}")
        return self


class GateParams(_Frozen):
    """Promotion gate for moving the ``champion`` alias."""

    min_roc_auc: float = Field(0.85, ge=0, le=1)
    min_f1: float = Field(0.70, ge=0, le=1)
    min_recall: float = Field(0.65, ge=0, le=1)
    tolerance: float = Field(0.002, ge=0)


class RegistryParams(_Frozen):
    """Registry name and promotion gate."""

    model_name: str = "accident-severity"
    gate: GateParams = GateParams()


class ScoreParams(_Frozen):
    """Year scored by the ``score`` DVC stage."""

    year: int = 2021


class Params(_Frozen):
    """Everything in params.yaml."""

    ingest: IngestParams = IngestParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    features: FeaturesParams = FeaturesParams()
    train: TrainParams = TrainParams()
    registry: RegistryParams = RegistryParams()
    score: ScoreParams = ScoreParams()


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read and check params.yaml."""
    with path.open(encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    return Params.model_validate(raw)


@lru_cache(maxsize=1)
def params() -> Params:
    """The project's params.yaml, read once per process."""
    return load_params()
