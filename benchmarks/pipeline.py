"""Pipeline speed: features from raw files, full and no-op `dvc repro`, training, MLflow logging.

Each number is printed with a baseline measured in the same run, so the ratio stays
meaningful on a loaded or slower machine:
- features: against the bare pandas read of the same four CSVs (the I/O floor);
- dvc repro: full run against the no-op run;
- training: against one plain ``xgb.train`` of the final tree count on the same matrix;
- MLflow: logging + registering against a run that logs a single metric.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pandas as pd
import xgboost as xgb

from pipeline.config import BUNDLED_DIR, ROOT, load_params
from pipeline.feature_spec import FeatureSpec
from pipeline.features import frame_matrix
from pipeline.raw_tables import find_tables, read_year
from pipeline.record_tables import records_from_tables
from pipeline.records import TARGET
from pipeline.settings import PipelineSettings
from pipeline.train import booster_params, fit, split_valid

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

T = TypeVar("T")


def _timed(fn: Callable[[], T], repeat: int = 1) -> tuple[float, T]:
    """Best wall time of ``repeat`` calls, and the last result."""
    start = time.perf_counter()
    out = fn()
    best = time.perf_counter() - start
    for _ in range(repeat - 1):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def bench_features(year: int = 2021) -> dict[str, float]:
    """Raw files -> validated-shape records -> model matrix for one year."""
    folder = BUNDLED_DIR / str(year)

    def raw_read() -> None:
        for path in folder.glob("*.csv.gz"):
            pd.read_csv(path, sep=";", dtype=str)

    def features() -> pd.DataFrame:
        records = records_from_tables(read_year(find_tables([folder])))
        frame_matrix(records, _spec_for(records))
        return records

    floor, _ = _timed(raw_read, 3)
    took, records = _timed(features, 3)
    return {"features_s": took, "raw_read_s": floor, "ratio": took / floor, "accidents": float(len(records))}


def _spec_for(records: pd.DataFrame) -> FeatureSpec:
    from pipeline.feature_spec import fit_spec

    return fit_spec(records, records[TARGET].to_numpy(), load_params().features.max_vma)


def bench_training() -> dict[str, float]:
    """The train stage's fit (early stopping + refit) against a bare xgb.train of the final trees."""
    params = load_params()
    records = records_from_tables(read_year(find_tables([BUNDLED_DIR / "2020"])))
    mask = split_valid(records, params.train.valid_fraction, params.train.seed)
    took, fitted = _timed(lambda: fit(records, mask, params.train, params.features.max_vma))
    matrix = frame_matrix(records, fitted.spec)
    dmatrix = xgb.DMatrix(matrix, label=records[TARGET].to_numpy())
    trees = fitted.best_iteration + 1
    bare, _ = _timed(lambda: xgb.train(booster_params(params.train), dmatrix, num_boost_round=trees))
    return {"train_s": took, "bare_xgb_train_s": bare, "ratio": took / bare, "trees": float(trees)}


def bench_mlflow() -> dict[str, float]:
    """log_and_register on the repo's trained model, in a throwaway SQLite store."""
    import mlflow

    from pipeline.model import load_local
    from pipeline.register import log_and_register
    from pipeline.train import load_years

    params = load_params()
    if not (ROOT / "models" / "model.ubj").exists():
        return {"skipped": 1.0}
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        settings = PipelineSettings(mlflow_tracking_uri=uri, mlflow_artifacts_dir=f"{tmp}/artifacts")
        mlflow.set_tracking_uri(uri)
        experiment = mlflow.create_experiment("baseline", artifact_location=Path(tmp, "base").as_uri())

        def minimal() -> None:
            with mlflow.start_run(experiment_id=experiment):
                mlflow.log_metric("x", 1.0)

        minimal()  # creates the schema; not timed
        base, _ = _timed(minimal, 3)
        model = load_local(ROOT / "models")
        metrics = json.loads((ROOT / "reports" / "metrics.json").read_text())
        test = load_years(params.train.test_years)
        took, _ = _timed(lambda: log_and_register(model, params, settings, metrics, test))
    return {"log_register_s": took, "minimal_run_s": base, "ratio": took / base}


def bench_repro() -> dict[str, float]:
    """`dvc repro` from scratch and with nothing changed, in a copy of the tracked files."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "project"
        tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        for name in filter(None, tracked.decode().split("\0")):
            if (ROOT / name).is_file():
                (work / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, work / name)
        (work / "dvc.lock").unlink(missing_ok=True)
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        }
        for cmd in (
            ["git", "init", "-q"],
            ["git", "add", "-A"],
            ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "s"],
        ):
            subprocess.run(cmd, cwd=work, check=True, env=env)

        def repro(*stages: str) -> None:
            subprocess.run(["dvc", "repro", *stages], cwd=work, check=True, env=env, capture_output=True)

        data_stages, _ = _timed(lambda: repro("features"))
        full, _ = _timed(lambda: repro())
        noop, _ = _timed(lambda: repro(), 3)
    return {
        "data_stages_s": data_stages,
        "rest_of_pipeline_s": full,
        "noop_s": noop,
        "full_s": data_stages + full,
        "ratio_full_vs_noop": (data_stages + full) / noop,
    }


def run() -> dict[str, dict[str, float]]:
    """Run every pipeline benchmark and print the numbers."""
    results = {
        "features (one year, raw files -> matrix)": bench_features(),
        "training (2020, early stopping + refit)": bench_training(),
        "mlflow logging + registering": bench_mlflow(),
        "dvc repro (both years, every stage)": bench_repro(),
    }
    for name, numbers in results.items():
        shown = ", ".join(f"{k}={v:.2f}" for k, v in numbers.items())
        print(f"{name}: {shown}")
    return results


if __name__ == "__main__":
    run()
