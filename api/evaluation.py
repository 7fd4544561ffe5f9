"""The test-year evaluation logged with the model's MLflow run, read once per model load."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Evaluation:
    """Parsed evaluation artifacts: plain records, ready to serialise."""

    metrics: Mapping[str, Mapping[str, Any]]
    roc: list[dict[str, float]]
    pr: list[dict[str, float]]
    thresholds: list[dict[str, float]]
    importance: list[dict[str, Any]]
    gate: Mapping[str, Any] | None = None

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
    )
