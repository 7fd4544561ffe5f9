"""Training, threshold choice, evaluation outputs, MLflow logging and the promotion gate."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipeline import evaluate, register, train
from pipeline.config import GateParams, Params, ThresholdParams
from pipeline.metrics import confusion, rates
from pipeline.model import Calibration, ModelLoadError, load_local, load_model
from pipeline.records import ID_COLUMN, TARGET
from pipeline.settings import PipelineSettings

METRICS = {"accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "brier", "threshold"}


def test_fit_is_deterministic(records, small_params: Params) -> None:
    rec = records[2020]
    mask = train.split_valid(rec, 0.2, 7)
    first = train.fit(rec, mask, small_params.train, 130)
    second = train.fit(rec, mask, small_params.train, 130)
    np.testing.assert_array_equal(first.valid_proba, second.valid_proba)
    x = train.frame_matrix(records[2021], first.spec)
    np.testing.assert_array_equal(first.booster.inplace_predict(x), second.booster.inplace_predict(x))


def test_validation_split_is_stratified_one_row_per_accident(records) -> None:
    rec = records[2020]
    mask = train.split_valid(rec, 0.25, 0)
    assert mask.sum() == pytest.approx(0.25 * len(rec), abs=1)
    assert rec.loc[mask, TARGET].mean() == pytest.approx(rec[TARGET].mean(), abs=0.02)
    with pytest.raises(ValueError, match="one row per accident"):
        train.split_valid(pd.concat([rec, rec.head(1)]), 0.2, 0)


def test_test_year_rows_never_reach_fitting(records, small_params: Params) -> None:
    mixed = pd.concat([records[2020], records[2021].head(5)], ignore_index=True)
    with pytest.raises(ValueError, match=r"test-year rows \[2021\] reached training"):
        train.fit(mixed, np.zeros(len(mixed), dtype=bool), small_params.train, 130)
    with pytest.raises(ValueError, match="overlap"):
        Params.model_validate({"train": {"train_years": [2020, 2021], "test_years": [2021]}})


def test_early_stopping_and_threshold_use_only_training_years(records, small_params: Params, monkeypatch) -> None:
    seen: list[set[int]] = []
    original = train.xgb.DMatrix

    def spy(data, *args, **kwargs):
        return original(data, *args, **kwargs)

    original_fit_spec = train.fit_spec

    def spy_spec(rows, target, max_vma):
        seen.append(set(rows["an"].astype(int)))
        return original_fit_spec(rows, target, max_vma)

    monkeypatch.setattr(train, "fit_spec", spy_spec)
    monkeypatch.setattr(train.xgb, "DMatrix", spy)
    train.fit(records[2020], train.split_valid(records[2020], 0.2, 0), small_params.train, 130)
    assert seen and all(years == {2020} for years in seen)


def test_threshold_policies() -> None:
    y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.7, 0.9, 0.6])
    best_f1 = train.choose_threshold(y, p, ThresholdParams(policy="max_f1"))
    assert best_f1 == pytest.approx(0.7)  # precision 1, recall 0.75
    recall_target = train.choose_threshold(y, p, ThresholdParams(policy="target_recall", target_recall=0.9))
    assert recall_target == pytest.approx(0.35)  # the highest threshold that still catches every positive


def test_evaluate_outputs(trained) -> None:
    metrics = json.loads((trained.reports / "metrics.json").read_text())
    assert set(metrics) == {"train", "valid", "test"}
    for split in metrics.values():
        assert set(split) >= METRICS
        assert all(isinstance(split[m], float) for m in METRICS)
    confusion = pd.read_csv(trained.reports / "plots" / "confusion.csv")
    assert set(confusion.columns) == {"actual", "predicted"} and len(confusion) == len(trained.test)
    assert {"fpr", "tpr"} <= set(pd.read_csv(trained.reports / "plots" / "roc.csv").columns)
    assert {"precision", "recall"} <= set(pd.read_csv(trained.reports / "plots" / "pr.csv").columns)
    for png in ("confusion", "roc", "pr", "feature_importance"):
        assert (trained.reports / "plots" / f"{png}.png").read_bytes().startswith(b"\x89PNG")
    predictions = pd.read_parquet(trained.reports / "predictions_test.parquet")
    assert list(predictions.columns) == [ID_COLUMN, "an", TARGET, "proba"]
    table = pd.read_csv(trained.reports / "thresholds.csv")
    at = table.iloc[(table["threshold"] - metrics["test"]["threshold"]).abs().argmin()]
    assert at["tp"] + at["fp"] + at["tn"] + at["fn"] == len(trained.test)


def test_confusion_rates_and_metrics() -> None:
    cm = confusion(np.array([1, 1, 0, 0]), np.array([0.9, 0.2, 0.6, 0.1]), 0.5)
    assert cm == {"tn": 1, "fp": 1, "fn": 1, "tp": 1}
    assert rates(cm) == {"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert rates({"tn": 0, "fp": 0, "fn": 0, "tp": 0})["f1"] == 0.0


def test_mlflow_run_contents(registry, trained) -> None:
    client = mlflow.MlflowClient(registry.tracking_uri)
    run = client.get_run(registry.run_id)
    assert run.data.params["train.seed"] == "42"
    assert run.data.params["train.xgb.max_depth"] == "3"
    assert run.data.metrics["test_roc_auc"] == pytest.approx(trained.metrics["test"]["roc_auc"])
    assert {"valid_f1", "train_brier", "test_pr_auc"} <= set(run.data.metrics)
    assert run.data.tags["gate.passed"] == "True"
    assert len(run.data.tags["git_commit"]) in (40, len("unknown"))
    artifacts = {
        a.path
        for folder in ("plots", "tables", "metrics", "data")
        for a in client.list_artifacts(run.info.run_id, folder)
    }
    assert {
        "plots/confusion.png",
        "plots/confusion.csv",
        "plots/roc.csv",
        "plots/pr.csv",
        "tables/thresholds.csv",
        "tables/feature_importance.csv",
        "data/fingerprint.json",
        "metrics/gate.json",
    } <= artifacts
    version = client.get_model_version(registry.model_name, registry.version)
    assert version.run_id == registry.run_id
    assert str(client.get_model_version_by_alias(registry.model_name, "champion").version) == registry.version
    assert str(client.get_model_version_by_alias(registry.model_name, "candidate").version) == registry.version
    loaded = load_model(registry.champion_uri, registry.tracking_uri)
    assert loaded.spec == trained.model.spec
    assert loaded.threshold == trained.model.threshold
    assert loaded.info["metrics"]["test"]["roc_auc"] == trained.metrics["test"]["roc_auc"]
    np.testing.assert_array_equal(loaded.predict_frame(trained.test), trained.model.predict_frame(trained.test))


def test_gate_rules() -> None:
    good = {"roc_auc": 0.87, "f1": 0.72, "recall": 0.8}
    gp = GateParams(min_roc_auc=0.86, min_f1=0.71, min_recall=0.7, tolerance=0.002)
    assert register.gate(good, gp, None).passed
    assert register.gate(good, gp, 0.871).passed  # within tolerance
    worse = register.gate(good, gp, 0.88)
    assert not worse.passed and "worse than champion" in worse.reasons[0]
    low = register.gate({"roc_auc": 0.8, "f1": 0.5, "recall": 0.9}, gp, None)
    assert not low.passed and len(low.reasons) == 2


def test_failed_gate_keeps_the_champion(registry, trained, small_params: Params) -> None:
    settings = PipelineSettings(mlflow_tracking_uri=registry.tracking_uri, mlflow_artifacts_dir=str(registry.artifacts))
    strict = Params.model_validate(
        {**small_params.model_dump(by_alias=True), "registry": {"gate": {"min_roc_auc": 0.999}}}
    )
    outcome = register.log_and_register(trained.model, strict, settings, trained.metrics, trained.test, trained.reports)
    assert outcome["gate"]["passed"] is False
    assert outcome["aliases"] == ["candidate"]
    client = mlflow.MlflowClient(registry.tracking_uri)
    assert str(client.get_model_version_by_alias(registry.model_name, "champion").version) == registry.version
    assert str(client.get_model_version_by_alias(registry.model_name, "candidate").version) == outcome["version"]
    # the champion comparison was made on the same test rows
    assert outcome["gate"]["champion_roc_auc"] == pytest.approx(trained.metrics["test"]["roc_auc"])


def test_loader_errors(tmp_path: Path, registry) -> None:
    with pytest.raises(ModelLoadError, match="not a folder nor an MLflow URI"):
        load_model(str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError):
        load_model("models:/no-such-model@champion", registry.tracking_uri)
    (tmp_path / "training.json").write_text("{}")
    with pytest.raises(ModelLoadError):
        load_local(tmp_path)


def test_stage_mains(trained, records, tmp_path: Path, monkeypatch, small_params: Params) -> None:
    """train.main and evaluate.main wire the functions to the files DVC tracks."""
    processed = tmp_path / "processed"
    processed.mkdir()
    for year, frame in records.items():
        frame.to_parquet(processed / f"accidents_{year}.parquet")
    monkeypatch.setattr(train, "PROCESSED_DIR", processed)
    monkeypatch.setattr(train, "MODEL_DIR", tmp_path / "models")
    monkeypatch.setattr(evaluate, "MODEL_DIR", tmp_path / "models")
    monkeypatch.setattr(evaluate, "REPORTS_DIR", tmp_path / "reports")
    monkeypatch.setattr(train, "params", lambda: small_params)
    monkeypatch.setattr(evaluate, "params", lambda: small_params)
    monkeypatch.setattr(evaluate, "load_years", lambda years: train.load_years(years, processed))
    train.main()
    first = {f.name: f.read_bytes() for f in (tmp_path / "models").iterdir()}
    train.main()  # the same inputs give the same bytes: DVC sees no change downstream
    assert {f.name: f.read_bytes() for f in (tmp_path / "models").iterdir()} == first
    evaluate.main()
    info = json.loads((tmp_path / "models" / "training.json").read_text())
    assert info["train_years"] == [2020] and info["refit_full"] is True
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert metrics["test"]["n"] == len(records[2021])


def test_isotonic_calibration_is_carried_and_applied(
    trained, records, tmp_path: Path, monkeypatch, small_params: Params
) -> None:
    """train.calibration: isotonic -> fitted on the validation predictions, saved as plain data,
    applied by every path that predicts through the model (batch, single row)."""
    from sklearn.isotonic import IsotonicRegression

    raw = trained.model.predict_frame(trained.test)
    y = trained.test[TARGET].to_numpy()
    calibration = train.fit_calibration(y, raw)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
    np.testing.assert_allclose(calibration.apply(raw), iso.predict(raw), rtol=0, atol=1e-12)
    assert calibration.apply(np.array([-1.0, 2.0])).tolist() == [calibration.y[0], calibration.y[-1]]
    with pytest.raises(ValueError, match="non-decreasing"):
        Calibration((0.5, 0.1), (0.0, 1.0))

    base = small_params.model_dump(by_alias=True)
    calibrated = Params.model_validate({**base, "train": {**base["train"], "calibration": "isotonic"}})
    processed = tmp_path / "processed"
    processed.mkdir()
    records[2020].to_parquet(processed / "accidents_2020.parquet")
    monkeypatch.setattr(train, "PROCESSED_DIR", processed)
    monkeypatch.setattr(train, "MODEL_DIR", tmp_path / "models")
    monkeypatch.setattr(train, "params", lambda: calibrated)
    train.main()
    model = load_local(tmp_path / "models")
    assert model.calibration is not None and model.info["calibration"] == "isotonic"
    raw_model = load_local(tmp_path / "models")
    raw_model.calibration = None
    expected = model.calibration.apply(raw_model.predict_frame(trained.test))
    np.testing.assert_array_equal(model.predict_frame(trained.test), expected)
    matrix = model.predict_input(trained.test.head(50))
    assert [model.predict_row(matrix[i : i + 1]) for i in range(50)] == expected[:50].tolist()
    fit_predictions = pd.read_parquet(tmp_path / "models" / "fit_predictions.parquet")
    valid = fit_predictions[fit_predictions["split"] == "valid"]
    assert valid["proba"].isin(model.calibration.y).all()  # calibrated, as served (isotonic levels)
