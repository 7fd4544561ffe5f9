"""Stage ``register``: log the run to MLflow, register the model, and gate the ``champion`` alias.

One MLflow run holds the params, data fingerprints, metrics of every split, the plots
and tables written by ``evaluate``, and the model: a pyfunc over accident records
(``pipeline.flavor``) whose artifact is the model folder, with everything serving needs in
it (threshold, feature spec with ``max_vma``, calibration, codebook version, training rows,
and the promotion gate it was registered with: thresholds, outcome and reasons). The new
version always gets the ``candidate`` alias; ``champion`` moves only when the gate in
params.yaml passes on the test year and the model is not worse than the current champion on
the same test rows.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.codebook import TABLES
from pipeline.config import (
    BUNDLED_DIR,
    INTERIM_DIR,
    MODEL_DIR,
    REPORTS_DIR,
    ROOT,
    GateParams,
    Params,
    params,
)
from pipeline.metrics import roc_auc
from pipeline.model import LoadedModel, ModelLoadError, load_local, load_model, save_local
from pipeline.monitoring.profile import Profile, build_profile
from pipeline.records import ID_COLUMN, RECORD_COLUMNS, TARGET
from pipeline.settings import PipelineSettings
from pipeline.storage import sha256_of, write_json_atomic
from pipeline.tracking_store import ensure_store
from pipeline.train import booster_params, load_years

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateResult:
    """Outcome of the promotion gate."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    champion_roc_auc: float | None = None


def gate(test: Mapping[str, Any], gp: GateParams, champion_roc_auc: float | None) -> GateResult:
    """Check the test-year metrics against the thresholds and the current champion."""
    reasons = []
    for metric, minimum in (("roc_auc", gp.min_roc_auc), ("f1", gp.min_f1), ("recall", gp.min_recall)):
        if test[metric] is None or test[metric] < minimum:
            reasons.append(f"test {metric} {test[metric]} < {minimum}")
    if champion_roc_auc is not None and test["roc_auc"] < champion_roc_auc - gp.tolerance:
        reasons.append(f"test roc_auc {test['roc_auc']:.4f} worse than champion {champion_roc_auc:.4f}")
    return GateResult(not reasons, reasons, champion_roc_auc)


def flatten(prefix: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dict -> {"a.b": v}."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(name, value))
        else:
            out[name] = value
    return out


def git_commit(root: Path = ROOT) -> str:
    """The current commit, or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
    except OSError:
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def data_fingerprint(p: Params) -> dict[str, Any]:
    """Years, row counts and file hashes of the data the run used."""
    years = sorted(set(p.train.train_years) | set(p.train.test_years))
    files: dict[str, str] = {}
    rows: dict[str, int] = {}
    for year in years:
        for table in TABLES:
            path = INTERIM_DIR / str(year) / f"{table}.parquet"
            if path.exists():
                files[f"interim/{year}/{table}.parquet"] = sha256_of(path)
        if p.ingest.source == "bundled":
            for raw in sorted((BUNDLED_DIR / str(year)).glob("*.csv*")):
                files[f"raw/{year}/{raw.name}"] = sha256_of(raw)
    for year in years:
        processed = ROOT / "data" / "processed" / f"accidents_{year}.parquet"
        if processed.exists():
            rows[str(year)] = len(pd.read_parquet(processed, columns=[TARGET]))
    return {"years": years, "rows": rows, "files": files, "source": p.ingest.source, "git_commit": git_commit()}


def configure_mlflow(settings: PipelineSettings) -> str:
    """Point MLflow at the tracking server and make sure the experiment exists; returns its id."""
    import mlflow

    ensure_store(settings.mlflow_tracking_uri)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = None
    if settings.mlflow_tracking_uri.startswith(("sqlite:", "file:")) or "://" not in settings.mlflow_tracking_uri:
        # Embedded default: artifacts beside the SQLite file, not inside the server's cwd.
        location = (ROOT / settings.mlflow_artifacts_dir).resolve().as_uri()
    return str(client.create_experiment(settings.mlflow_experiment, artifact_location=location))


def champion_roc_auc(settings: PipelineSettings, test: pd.DataFrame) -> float | None:
    """ROC-AUC of the current champion on these test rows, or None when there is none."""
    uri = f"models:/{settings.model_name}@{settings.model_alias}"
    try:
        champion = load_model(uri)
    except ModelLoadError as exc:
        log.warning("no comparable champion, gate uses the thresholds only: %s", exc)
        return None
    return roc_auc(test[TARGET].to_numpy(), champion.predict_frame(test))


def next_version(client: Any, name: str) -> str:
    """The version number the registry will give the next version of ``name``.

    Written into the model's metadata before it is registered; ``log_and_register`` checks it.
    """
    versions = client.search_model_versions(f"name = '{name}'")
    return str(max((int(v.version) for v in versions), default=0) + 1)


def serving_info(
    model: LoadedModel,
    p: Params,
    metrics: Mapping[str, Mapping[str, Any]],
    result: GateResult,
    name: str,
    version: str,
) -> dict[str, Any]:
    """The model folder's ``training.json`` as registered: training info, metrics and the gate."""
    return {
        **model.info,
        "metrics": metrics,
        "booster_params": booster_params(p.train),
        "gate": {"thresholds": p.registry.gate.model_dump(), **asdict(result)},
        "registered_model": {"name": name, "version": version},
    }


def model_metadata(model: LoadedModel, info: Mapping[str, Any]) -> dict[str, Any]:
    """The MLmodel ``metadata``: what a pyfunc user sees without opening the artifacts."""
    gate = info["gate"]
    return {
        "model_name": info["registered_model"]["name"],
        "model_version": info["registered_model"]["version"],
        "threshold": model.threshold,
        "calibration": model.calibration.method if model.calibration else "none",
        "codebook_version": model.spec.codebook_version,
        "max_vma": model.spec.max_vma,
        "feature_spec_version": model.spec.version,
        "output": "probability (of a severe accident), label (1 when probability >= threshold)",
        "gate_passed": gate["passed"],
        "gate_reasons": list(gate["reasons"]),
        "training_rows": dict(info.get("rows") or {}),
    }


def log_and_register(
    model: LoadedModel,
    p: Params,
    settings: PipelineSettings,
    metrics: Mapping[str, Mapping[str, Any]],
    test: pd.DataFrame,
    reports: Path = REPORTS_DIR,
) -> dict[str, Any]:
    """Log one MLflow run, register the model, set aliases; returns what happened."""
    import mlflow

    from pipeline.flavor import log_pyfunc

    start = time.perf_counter()
    experiment_id = configure_mlflow(settings)
    client = mlflow.MlflowClient()
    champion_auc = champion_roc_auc(settings, test)
    result = gate(metrics["test"], p.registry.gate, champion_auc)
    fingerprint = data_fingerprint(p)
    expected_version = next_version(client, settings.model_name)
    info = serving_info(model, p, metrics, result, settings.model_name, expected_version)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params(
            {
                **flatten("train", p.train.model_dump()),
                "ingest.source": p.ingest.source,
                "ingest.years": str(list(p.ingest.years)),
            }
        )
        mlflow.set_tags(
            {
                "git_commit": fingerprint["git_commit"],
                "data.years": str(fingerprint["years"]),
                "gate.passed": str(result.passed),
                "codebook_version": model.spec.codebook_version,
            }
        )
        mlflow.log_metrics(
            {
                f"{split}_{k}": float(v)
                for split, m in metrics.items()
                for k, v in m.items()
                if isinstance(v, (int, float)) and v is not None
            }
        )
        mlflow.log_dict(fingerprint, "data/fingerprint.json")
        mlflow.log_dict(dict(metrics), "metrics/metrics.json")
        mlflow.log_dict(info["gate"], "metrics/gate.json")
        for path in sorted((reports / "plots").glob("*.png")) + sorted((reports / "plots").glob("*.csv")):
            mlflow.log_artifact(str(path), "plots")
        for name in ("thresholds.csv", "feature_importance.csv"):
            mlflow.log_artifact(str(reports / name), "tables")
        # Slices, commune centres and the typical accident: served by the API when present.
        for name in ("slices.json", "places.csv", "scenario.json"):
            if (reports / name).exists():
                mlflow.log_artifact(str(reports / name), "tables")
        folder = Path(tmp) / "model"
        save_local(folder, model.booster, model.spec, info, model.calibration, model.profile)
        logged = log_pyfunc(folder, Path(tmp), test.head(2)[list(RECORD_COLUMNS)], model_metadata(model, info))
        mv = mlflow.register_model(logged.model_uri, settings.model_name)
        if str(mv.version) != expected_version:
            # Another registration landed in between: the registry's number is the truth.
            log.warning("registered as version %s, the metadata says %s", mv.version, expected_version)
        client.set_registered_model_alias(settings.model_name, settings.candidate_alias, mv.version)
        if result.passed:
            client.set_registered_model_alias(settings.model_name, settings.model_alias, mv.version)
        for key, value in {
            "gate.passed": str(result.passed),
            "gate.reasons": json.dumps(result.reasons),
            "threshold": str(model.threshold),
            "flavor": "python_function",
        }.items():
            client.set_model_version_tag(settings.model_name, mv.version, key, value)
        run_id = run.info.run_id
    seconds = time.perf_counter() - start
    outcome = {
        "run_id": run_id,
        "experiment_id": experiment_id,
        "model_name": settings.model_name,
        "version": str(mv.version),
        "aliases": [settings.candidate_alias] + ([settings.model_alias] if result.passed else []),
        "gate": asdict(result),
        "seconds": round(seconds, 2),
    }
    log.info(
        "registered %s v%s (%s) in %.1f s; gate %s %s",
        settings.model_name,
        mv.version,
        ", ".join(outcome["aliases"]),
        seconds,
        "passed" if result.passed else "failed",
        result.reasons,
    )
    return outcome


def reference_profile(train: pd.DataFrame, fit_predictions: pd.DataFrame) -> Profile:
    """The training profile drift is measured against: the validation rows and their probabilities.

    Validation probabilities, not in-sample ones: they come from the early-stopped model that
    never saw those rows (calibrated as served), as new files get them; a boosted model's
    in-sample scores are sharper than on unseen rows, so the score's PSI would flag every new
    file. The records are those same rows (a stratified fifth of the training years: ~9,500
    accidents for 2020, enough for deciles and the commonest categories).
    """
    valid = fit_predictions.loc[fit_predictions["split"] == "valid", [ID_COLUMN, "proba"]]
    rows = train.merge(valid, on=ID_COLUMN, how="inner", validate="one_to_one")
    return build_profile(rows, rows["proba"].to_numpy())


def main() -> None:
    """DVC entry point."""
    p = params()
    settings = PipelineSettings()
    model = load_local(MODEL_DIR, n_jobs=p.train.n_jobs)
    model.profile = reference_profile(
        load_years(p.train.train_years), pd.read_parquet(MODEL_DIR / "fit_predictions.parquet")
    )
    metrics = json.loads((REPORTS_DIR / "metrics.json").read_text(encoding="utf-8"))
    test = load_years(p.train.test_years)
    outcome = log_and_register(model, p, settings, metrics, test)
    write_json_atomic(outcome, REPORTS_DIR / "registry.json")


if __name__ == "__main__":
    from pipeline.cli import run_stage

    run_stage(main)
