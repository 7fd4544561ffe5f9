"""The only model loader: a local model folder or an MLflow model URI -> ``LoadedModel``.

The batch job, the ``evaluate`` stage and the API all predict through ``LoadedModel``,
so their probabilities are identical for identical records.
"""

from __future__ import annotations

import ctypes
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
import yaml

from pipeline.features import FeatureSpec, columns_of, feature_matrix, record_row
from pipeline.resolve import ModelLoadError, ResolvedModel, resolve

log = logging.getLogger(__name__)

__all__ = ["LoadedModel", "ModelLoadError", "load_local", "load_mlflow_folder", "load_model", "load_resolved"]

BOOSTER_FILE = "model.ubj"
SPEC_FILE = "feature_spec.json"
INFO_FILE = "training.json"


# ``Booster.inplace_predict`` on a dense float32 array is XGBoosterPredictFromDense with these
# arguments (value predictions, every tree, NaN as missing); ``predict_row`` calls it directly.
_PREDICT_ARGS = json.dumps(
    {
        "type": 0,
        "training": False,
        "iteration_begin": 0,
        "iteration_end": 0,
        "missing": float("nan"),
        "strict_shape": False,
        "cache_id": 0,
    }
).encode()
_ROW_INTERFACE = (
    b'{"data": [%d, false], "strides": null, "descr": [["", "<f4"]], "typestr": "<f4", "shape": [1, %d], "version": 3}'
)
_PREDICT_FROM_DENSE: Any = getattr(getattr(xgb.core, "_LIB", None), "XGBoosterPredictFromDense", None)
_CHECK_CALL: Any = getattr(xgb.core, "_check_call", None)


@dataclass
class LoadedModel:
    """A booster with everything needed to serve it."""

    booster: xgb.Booster
    spec: FeatureSpec
    threshold: float
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    source: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Probabilities for a float32 matrix in ``spec.columns`` order."""
        return np.asarray(self.booster.inplace_predict(matrix, validate_features=False), dtype=np.float64)

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
        """Probability for one row (1 x n float32), as ``predict_matrix`` computes it.

        The same native call as ``inplace_predict`` with the same arguments, without its
        ~40 us of Python (input type checks, a class built per call, output copies).
        """
        if (
            _PREDICT_FROM_DENSE is None
            or _CHECK_CALL is None
            or row.ndim != 2
            or row.shape[0] != 1
            or row.dtype != np.float32
        ):
            return float(self.predict_matrix(row)[0])
        row = np.ascontiguousarray(row)
        interface = _ROW_INTERFACE % (row.ctypes.data, row.shape[1])
        preds = ctypes.POINTER(ctypes.c_float)()
        shape = ctypes.POINTER(ctypes.c_uint64)()
        dims = ctypes.c_uint64()
        status = _PREDICT_FROM_DENSE(
            self.booster.handle,
            interface,
            _PREDICT_ARGS,
            None,
            ctypes.byref(shape),
            ctypes.byref(dims),
            ctypes.byref(preds),
        )
        _CHECK_CALL(status)
        # float32 -> float, as ``np.asarray(..., dtype=np.float64)`` does in predict_matrix.
        return float(preds[0])

    def contributions(self, row: np.ndarray) -> np.ndarray:
        """SHAP contributions (log-odds) of each feature, plus the bias last."""
        dm = xgb.DMatrix(row, feature_names=list(self.spec.columns))
        return np.asarray(self.booster.predict(dm, pred_contribs=True))[0]

    def describe(self) -> dict[str, Any]:
        """Identity of the model, for outputs and logs."""
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "threshold": self.threshold,
        }


def save_local(folder: Path, booster: xgb.Booster, spec: FeatureSpec, info: Mapping[str, Any]) -> None:
    """Write a model folder: booster, feature spec, training info (threshold, metrics...)."""
    folder.mkdir(parents=True, exist_ok=True)
    booster.save_model(folder / BOOSTER_FILE)
    (folder / SPEC_FILE).write_text(spec.to_json(), encoding="utf-8")
    (folder / INFO_FILE).write_text(json.dumps(dict(info), indent=2, sort_keys=True), encoding="utf-8")


def _booster(path: Path, n_jobs: int) -> xgb.Booster:
    booster = xgb.Booster()
    booster.load_model(path)
    booster.set_param({"nthread": n_jobs})
    return booster


def load_local(folder: Path, n_jobs: int = 1) -> LoadedModel:
    """Load a folder written by ``save_local`` (the ``train`` stage's output)."""
    try:
        info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
        spec = FeatureSpec.from_dict(json.loads((folder / SPEC_FILE).read_text(encoding="utf-8")))
        booster = _booster(folder / BOOSTER_FILE, n_jobs)
    except (OSError, ValueError, KeyError, xgb.core.XGBoostError) as exc:
        raise ModelLoadError(f"cannot load model folder {folder}: {exc}") from exc
    return LoadedModel(booster, spec, float(info["threshold"]), source=str(folder), info=info)


def load_mlflow_folder(folder: Path) -> LoadedModel:
    """Load an MLflow model folder written by ``mlflow.xgboost.log_model`` with our metadata."""
    try:
        mlmodel = yaml.safe_load((folder / "MLmodel").read_text(encoding="utf-8"))
        meta = mlmodel.get("metadata") or {}
        flavor = mlmodel["flavors"]["xgboost"]
        spec_file = next(folder.rglob(meta.get("feature_spec_file", SPEC_FILE)))
        spec = FeatureSpec.from_dict(json.loads(spec_file.read_text(encoding="utf-8")))
        booster = _booster(folder / flavor["data"], 1)
        info = json.loads(meta.get("training", "{}"))
        return LoadedModel(
            booster, spec, float(meta["threshold"]), run_id=mlmodel.get("run_id"), source=str(folder), info=info
        )
    except (OSError, ValueError, KeyError, TypeError, StopIteration, xgb.core.XGBoostError) as exc:
        raise ModelLoadError(f"cannot load MLflow model folder {folder}: {exc}") from exc


def load_resolved(resolved: ResolvedModel) -> LoadedModel:
    """Load a model that ``pipeline.resolve`` fetched, with its registry identity."""
    model = load_mlflow_folder(resolved.folder)
    model.name, model.version, model.alias = resolved.name, resolved.version, resolved.alias
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
