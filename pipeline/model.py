"""The only model loader: a model folder, or an MLflow model URI -> ``LoadedModel``.

The batch job, the ``evaluate`` stage, the API and the registered pyfunc (``pipeline.flavor``)
all predict through ``LoadedModel``, so their probabilities are identical for identical records.
A registered version is an MLflow pyfunc whose ``model`` artifact is the folder ``save_local``
writes; the fast path loads that same folder, without going through ``mlflow.pyfunc``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
import yaml

from pipeline.feature_spec import FeatureSpec
from pipeline.features import columns_of, feature_matrix, record_row
from pipeline.monitoring.profile import PROFILE_FILE, Profile
from pipeline.resolve import ModelLoadError, ResolvedModel, resolve

log = logging.getLogger(__name__)

__all__ = [
    "Calibration",
    "LoadedModel",
    "ModelLoadError",
    "load_local",
    "load_mlflow_folder",
    "load_model",
    "load_resolved",
]

BOOSTER_FILE = "model.ubj"
SPEC_FILE = "feature_spec.json"
INFO_FILE = "training.json"
CALIBRATION_FILE = "calibration.json"
# Name of the pyfunc artifact that holds the model folder (``python_function.artifacts`` in MLmodel).
MODEL_ARTIFACT = "model"


@dataclass(frozen=True)
class Calibration:
    """A monotone map of raw booster probabilities, as plain data: ``np.interp(p, x, y)``.

    Fitted at train time (isotonic regression on the validation predictions) and carried in the
    model folder, so every path that predicts through ``LoadedModel`` applies the same map.
    """

    x: tuple[float, ...]
    y: tuple[float, ...]
    method: str = "isotonic"
    _xy: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y) or len(self.x) < 2 or any(b < a for a, b in pairwise(self.x)):
            raise ValueError("calibration needs as many x as y, at least two points, x non-decreasing")
        # The arrays np.interp reads, built once (frozen: set through object.__setattr__).
        object.__setattr__(self, "_xy", (np.asarray(self.x, dtype=np.float64), np.asarray(self.y, dtype=np.float64)))

    def apply(self, proba: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (the end points' values outside the fitted range)."""
        return np.interp(proba, *self._xy)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"method": self.method, "x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """Inverse of ``to_dict``."""
        return cls(tuple(float(v) for v in data["x"]), tuple(float(v) for v in data["y"]), str(data["method"]))


@dataclass
class LoadedModel:
    """A booster with everything needed to serve it.

    ``info`` is the model's ``training.json``: threshold policy, training rows, metrics by split,
    and (once registered) the promotion gate it passed and its registered name and version.
    """

    booster: xgb.Booster
    spec: FeatureSpec
    threshold: float
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    source: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)
    calibration: Calibration | None = None
    profile: Profile | None = None  # the training profile drift is measured against (None: older models)

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Probabilities for a float32 matrix in ``spec.columns`` order."""
        proba = np.asarray(self.booster.inplace_predict(matrix, validate_features=False), dtype=np.float64)
        return proba if self.calibration is None else self.calibration.apply(proba)

    def predict_input(self, records: pd.DataFrame) -> np.ndarray:
        """The model matrix for a frame of accident records."""
        return feature_matrix(columns_of(records), self.spec)

    def predict_frame(self, records: pd.DataFrame) -> np.ndarray:
        """Probabilities for a frame of accident records."""
        return self.predict_matrix(self.predict_input(records))

    def row(self, record: Mapping[str, Any]) -> np.ndarray:
        """The model row (1 x n float32) for one record: ``feature_matrix``'s row, bit for bit."""
        return record_row(record, self.spec)

    def predict_row(self, row: np.ndarray) -> float:
        """Probability for one row (1 x n float32), as ``predict_matrix`` computes it."""
        return float(self.predict_matrix(row)[0])

    def contributions(self, row: np.ndarray) -> np.ndarray:
        """SHAP contributions (log-odds of the raw booster) of each feature, plus the bias last."""
        dm = xgb.DMatrix(row, feature_names=list(self.spec.columns))
        return np.asarray(self.booster.predict(dm, pred_contribs=True))[0]

    @property
    def gate(self) -> Mapping[str, Any] | None:
        """The promotion gate this version was registered with: thresholds, passed, reasons."""
        gate = self.info.get("gate")
        return gate if isinstance(gate, Mapping) else None

    def describe(self) -> dict[str, Any]:
        """Identity of the model, for outputs and logs."""
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "threshold": self.threshold,
        }


def save_local(
    folder: Path,
    booster: xgb.Booster,
    spec: FeatureSpec,
    info: Mapping[str, Any],
    calibration: Calibration | None = None,
    profile: Profile | None = None,
) -> None:
    """Write a model folder: booster, feature spec, training info (threshold, metrics...), calibration,
    and the training profile drift is measured against."""
    folder.mkdir(parents=True, exist_ok=True)
    booster.save_model(folder / BOOSTER_FILE)
    (folder / SPEC_FILE).write_text(spec.to_json(), encoding="utf-8")
    (folder / INFO_FILE).write_text(json.dumps(dict(info), indent=2, sort_keys=True), encoding="utf-8")
    calibration_file = folder / CALIBRATION_FILE
    if calibration is not None:
        calibration_file.write_text(json.dumps(calibration.to_dict(), sort_keys=True), encoding="utf-8")
    else:
        calibration_file.unlink(missing_ok=True)
    profile_file = folder / PROFILE_FILE
    if profile is not None:
        profile_file.write_text(profile.to_json(), encoding="utf-8")
    else:
        profile_file.unlink(missing_ok=True)


def _booster(path: Path, n_jobs: int) -> xgb.Booster:
    booster = xgb.Booster()
    booster.load_model(path)
    booster.set_param({"nthread": n_jobs})
    return booster


def load_local(folder: Path, n_jobs: int = 1) -> LoadedModel:
    """Load a folder written by ``save_local`` (the ``train`` stage's output, a pyfunc's artifact)."""
    try:
        info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
        spec = FeatureSpec.from_dict(json.loads((folder / SPEC_FILE).read_text(encoding="utf-8")))
        calibration_file = folder / CALIBRATION_FILE
        calibration = (
            Calibration.from_dict(json.loads(calibration_file.read_text(encoding="utf-8")))
            if calibration_file.exists()
            else None
        )
        profile_file = folder / PROFILE_FILE
        profile = Profile.from_json(profile_file.read_bytes()) if profile_file.exists() else None
        booster = _booster(folder / BOOSTER_FILE, n_jobs)
        threshold = float(info["threshold"])
    except (OSError, ValueError, KeyError, TypeError, xgb.core.XGBoostError) as exc:
        raise ModelLoadError(f"cannot load model folder {folder}: {exc}") from exc
    registered = info.get("registered_model") or {}
    return LoadedModel(
        booster,
        spec,
        threshold,
        name=registered.get("name"),
        version=registered.get("version"),
        source=str(folder),
        info=info,
        calibration=calibration,
        profile=profile,
    )


def pyfunc_artifact(mlmodel: Mapping[str, Any]) -> str:
    """Relative path of the model folder inside a registered pyfunc (from its MLmodel)."""
    try:
        return str(mlmodel["flavors"]["python_function"]["artifacts"][MODEL_ARTIFACT]["path"])
    except (KeyError, TypeError) as exc:
        flavors = sorted((mlmodel.get("flavors") or {}) if isinstance(mlmodel, Mapping) else {})
        raise ModelLoadError(
            f"not an accident-severity pyfunc (flavours {flavors}, no {MODEL_ARTIFACT!r} artifact): "
            "register it again with this code"
        ) from exc


def load_mlflow_folder(folder: Path) -> LoadedModel:
    """Load the model folder inside a downloaded pyfunc: the files ``mlflow.pyfunc`` would load."""
    try:
        mlmodel = yaml.safe_load((folder / "MLmodel").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"cannot load MLflow model folder {folder}: {exc}") from exc
    model = load_local(folder / pyfunc_artifact(mlmodel))
    model.run_id = mlmodel.get("run_id")
    model.source = str(folder)
    return model


def load_resolved(resolved: ResolvedModel) -> LoadedModel:
    """Load a model that ``pipeline.resolve`` fetched, with its registry identity."""
    model = load_mlflow_folder(resolved.folder)
    # The registry's word on identity; a runs:/ URI has none, the folder's training.json may.
    model.name = resolved.name or model.name
    model.version = resolved.version or model.version
    model.alias = resolved.alias
    model.source = resolved.uri
    return model


def load_model(uri: str, tracking_uri: str | None = None) -> LoadedModel:
    """Load ``models:/name@alias``, ``models:/name/version``, ``runs:/...``, or a local folder."""
    path = Path(uri)
    if path.is_dir():
        if (path / "MLmodel").exists():
            return load_mlflow_folder(path)
        return load_local(path)
    return load_resolved(resolve(uri, tracking_uri))
