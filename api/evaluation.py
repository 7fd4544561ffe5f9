"""The test-year evaluation logged with the model's MLflow run, read once per model load."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException

from api.schemas import rows_of

log = logging.getLogger(__name__)

# Artifact paths written by pipeline/register.py.
ARTIFACTS: Mapping[str, str] = {
    "metrics": "metrics/metrics.json",
    "roc": "plots/roc.csv",
    "pr": "plots/pr.csv",
    "thresholds": "tables/thresholds.csv",
    "importance": "tables/feature_importance.csv",
}
GATE_ARTIFACT = "metrics/gate.json"
# Logged by newer runs only: a model registered before them is served without these parts.
OPTIONAL_TABLES: Mapping[str, str] = {
    "calibration_valid": "plots/calibration_valid.csv",
    "calibration_test": "plots/calibration_test.csv",
    "places": "tables/places.csv",
}
OPTIONAL_JSON: Mapping[str, str] = {"slices": "tables/slices.json", "scenario": "tables/scenario.json"}


@dataclass(frozen=True)
class Evaluation:
    """Parsed evaluation artifacts: plain records, ready to serialise."""

    metrics: Mapping[str, Mapping[str, Any]]
    roc: list[dict[str, float]]
    pr: list[dict[str, float]]
    thresholds: list[dict[str, float]]
    importance: list[dict[str, Any]]
    gate: Mapping[str, Any] | None = None
    calibration: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)
    slices: Mapping[str, Any] | None = None
    places: list[dict[str, Any]] = field(default_factory=list)
    scenario: Mapping[str, Any] | None = None

    def confusion(self, split: str = "test") -> dict[str, int]:
        """Confusion counts at the model threshold, rebuilt from the split's rounded metrics.

        ``recall`` and ``accuracy`` are logged to 6 decimals, which pins the integer counts
        exactly for splits of up to several hundred thousand rows.
        """
        m = self.metrics[split]
        n, positives = int(m["n"]), int(m["positives"])
        tp = round(float(m["recall"]) * positives)
        tn = round(float(m["accuracy"]) * n) - tp
        return {"tn": tn, "fp": n - positives - tn, "fn": positives - tp, "tp": tp}


def _download(run_id: str, artifact: str, dest: Path, tracking_uri: str) -> Path:
    import mlflow.artifacts

    return Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact, dst_path=str(dest), tracking_uri=tracking_uri
        )
    )


def _optional(run_id: str, tracking_uri: str, dest: Path) -> dict[str, Any]:
    """The optional artifacts the run has: frames as records, JSON as dicts; missing ones left out."""
    found: dict[str, Any] = {}
    for key, artifact in {**OPTIONAL_TABLES, **OPTIONAL_JSON}.items():
        try:
            path = _download(run_id, artifact, dest, tracking_uri)
            if key in OPTIONAL_JSON:
                found[key] = json.loads(path.read_text(encoding="utf-8"))
            else:
                found[key] = rows_of(pd.read_csv(path, dtype={"com": str, "dep": str}))
        except (MlflowException, OSError, ValueError) as exc:
            log.info("run %s has no %s: %s", run_id, artifact, exc)
    return found


def load_evaluation(run_id: str | None, tracking_uri: str) -> Evaluation | None:
    """Download and parse the run's evaluation artifacts; None when the run has none."""
    if not run_id:
        return None
    with tempfile.TemporaryDirectory(prefix="accident-api-eval-") as tmp:
        try:
            paths = {key: _download(run_id, path, Path(tmp), tracking_uri) for key, path in ARTIFACTS.items()}
            metrics = json.loads(paths["metrics"].read_text(encoding="utf-8"))
            tables = {key: pd.read_csv(paths[key]) for key in ("roc", "pr", "thresholds", "importance")}
        except (MlflowException, OSError, ValueError) as exc:
            log.warning("run %s has no usable evaluation artifacts: %s", run_id, exc)
            return None
        try:
            gate = json.loads(_download(run_id, GATE_ARTIFACT, Path(tmp), tracking_uri).read_text(encoding="utf-8"))
        except (MlflowException, OSError, ValueError):
            gate = None
        extra = _optional(run_id, tracking_uri, Path(tmp))
    if "test" not in metrics:
        log.warning("run %s logged no test-split metrics", run_id)
        return None
    return Evaluation(
        metrics=metrics,
        roc=rows_of(tables["roc"]),
        pr=rows_of(tables["pr"]),
        thresholds=rows_of(tables["thresholds"]),
        importance=rows_of(tables["importance"]),
        gate=gate,
        calibration={
            split: extra[f"calibration_{split}"] for split in ("valid", "test") if f"calibration_{split}" in extra
        },
        slices=extra.get("slices"),
        places=extra.get("places", []),
        scenario=extra.get("scenario"),
    )
