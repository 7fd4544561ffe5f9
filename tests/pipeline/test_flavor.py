"""The registered model is an MLflow pyfunc over accident records, self-contained, and it gives
the probabilities of the fast path (``LoadedModel``) that the API and the batch job use."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipeline.flavor import OUTPUT_COLUMNS, complete_records
from pipeline.model import LoadedModel, ModelLoadError, load_mlflow_folder, load_model
from pipeline.records import RECORD_COLUMNS, RECORD_FIELDS


@pytest.fixture(scope="module")
def champion_folder(registry, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The champion's files, downloaded once: what mlflow.pyfunc and our loader both read."""
    dest = tmp_path_factory.mktemp("champion")
    return Path(mlflow.artifacts.download_artifacts(registry.champion_uri, dst_path=str(dest)))


def test_pyfunc_in_process_gives_the_fast_path_probabilities(registry, trained, champion_folder: Path) -> None:
    pyfunc = mlflow.pyfunc.load_model(str(champion_folder))
    fast = load_model(str(champion_folder))
    # The same model folder behind both: the pyfunc's ``model`` artifact.
    assert pyfunc.unwrap_python_model().model.source == str(champion_folder / "artifacts" / "model")
    records = trained.test[list(RECORD_COLUMNS)]
    out = pyfunc.predict(records)
    expected = trained.model.predict_frame(trained.test)
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    np.testing.assert_array_equal(out["probability"].to_numpy(), expected)
    np.testing.assert_array_equal(fast.predict_frame(trained.test), expected)
    assert out["label"].tolist() == (expected >= trained.model.threshold).astype(int).tolist()
    # From the registry, as a user would load it.
    from_registry = mlflow.pyfunc.load_model(registry.champion_uri).predict(records.head(20))
    np.testing.assert_array_equal(from_registry["probability"].to_numpy(), expected[:20])


def test_registered_model_carries_what_serving_needs(registry, trained, champion_folder: Path) -> None:
    info = mlflow.models.get_model_info(registry.champion_uri)
    assert set(info.flavors) == {"python_function"}
    meta = info.metadata
    assert meta["model_name"] == registry.model_name and meta["model_version"] == registry.version
    assert meta["threshold"] == trained.model.threshold
    assert meta["max_vma"] == trained.model.spec.max_vma
    assert meta["codebook_version"] == trained.model.spec.codebook_version
    assert meta["calibration"] == "none" and meta["gate_passed"] is True
    inputs = info.signature.inputs.inputs
    assert [c.name for c in inputs] == list(RECORD_COLUMNS)
    assert not any(c.required for c in inputs)  # every field has a documented default
    types = {c.name: c.type.name for c in inputs}
    assert types["dep"] == "string" and types["lum"] == "long" and types["lat"] == "double"
    assert types["age_min"] == "double"  # may be unknown
    assert info.signature.outputs.input_names() == list(OUTPUT_COLUMNS)
    requirements = (champion_folder / "requirements.txt").read_text().split()
    assert requirements and all("==" in line for line in requirements)
    assert {r.split("==")[0] for r in requirements} >= {"xgboost-cpu", "mlflow-skinny", "pandas", "pyarrow"}
    assert (champion_folder / "code" / "pipeline" / "features.py").exists()  # the feature code travels
    # The fast path reads the gate, threshold and feature parameters from the model, not params.yaml.
    model = load_model(registry.champion_uri, registry.tracking_uri)
    assert model.gate is not None and model.gate["passed"] is True
    assert model.gate["thresholds"]["min_roc_auc"] == 0.5 and model.gate["reasons"] == []
    assert model.info["registered_model"] == {"name": registry.model_name, "version": registry.version}
    assert (model.name, model.version, model.alias) == (registry.model_name, registry.version, "champion")
    tags = mlflow.MlflowClient(registry.tracking_uri).get_model_version(registry.model_name, registry.version).tags
    assert tags["gate.passed"] == "True" and float(tags["threshold"]) == trained.model.threshold


def test_missing_columns_and_values_take_the_documented_defaults(champion_folder: Path) -> None:
    pyfunc = mlflow.pyfunc.load_model(str(champion_folder))
    model = load_model(str(champion_folder))
    partial = pd.DataFrame({"dep": ["13", "2A"], "heure": [3, 17], "lat": [None, 41.9], "com": [None, "2A004"]})
    out = pyfunc.predict(partial)
    singles = [{"dep": "13", "heure": 3}, {"dep": "2A", "heure": 17, "lat": 41.9, "com": "2A004"}]
    assert out["probability"].tolist() == [model.predict_row(model.row(r)) for r in singles]
    assert len(pyfunc.predict(partial.iloc[:0])) == 0
    # A missing column takes the field's default; a null in an optional field means unknown.
    filled = complete_records(pd.DataFrame({"vma": [110, 90], "age_min": [np.nan, 30.0]}))
    assert filled["vma"].tolist() == [110, 90] and np.isnan(filled["age_min"][0])
    assert filled["age_max"].tolist() == [45.0, 45.0] and filled["nbv"].tolist() == [2, 2]
    assert filled["com"].tolist() == [None, None]
    assert list(filled.columns) == [f.name for f in RECORD_FIELDS]


def test_loading_something_that_is_not_our_pyfunc_fails_clearly(tmp_path: Path, trained) -> None:
    # Explicit requirements: inferring them runs a child process that imports the model.
    mlflow.xgboost.save_model(trained.model.booster, str(tmp_path / "raw"), pip_requirements=["xgboost"])
    with pytest.raises(ModelLoadError, match="not an accident-severity pyfunc"):
        load_mlflow_folder(tmp_path / "raw")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "MLmodel").write_text("flavors: [unclosed")
    with pytest.raises(ModelLoadError):
        load_mlflow_folder(tmp_path / "broken")
    assert isinstance(load_model(str(trained.model_dir)), LoadedModel)
