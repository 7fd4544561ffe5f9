"""Shared fixtures: small real BAAC extracts, a model trained on them, and an MLflow
registry (SQLite in a temporary folder) holding that model as ``@champion``.

Nothing here touches the repo's own ``mlflow.db`` or ``mlartifacts/``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

# The heavy imports (pandas, XGBoost, matplotlib, MLflow) happen in the fixtures that need them:
# pytest imports this file before anything else, in every process (the xdist controller too).
if TYPE_CHECKING:
    import pandas as pd

    from pipeline.config import Params
    from pipeline.model import LoadedModel

TESTS = Path(__file__).resolve().parent
EXTRACTS = TESTS / "data" / "baac"
ROOT = TESTS.parent
MAIN = ROOT / "app" / "streamlit_app.py"  # the dashboard's entry point
UPLOAD = TESTS / "data" / "upload" / "accidents-2021-extract.csv"  # 150 real 2021 records
EXTRACT_2021 = EXTRACTS / "2021"


# A module marked slow as a whole: `pytestmark = pytest.mark.slow` or a list holding it.
SLOW_MODULE = re.compile(r"^pytestmark = .*\bpytest\.mark\.slow\b", re.MULTILINE)


def deselects_slow(markexpr: str) -> bool:
    """Whether ``-m markexpr`` surely deselects every slow test: a plain conjunction holding ``not slow``."""
    terms = [term.strip() for term in markexpr.split(" and ")]
    return "not slow" in terms and not any(word in markexpr for word in (" or ", "(", ")"))


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With ``-m "not slow ..."`` (make test-fast), a module marked slow as a whole is not even
    imported: its tests would all be deselected, and its imports cost seconds of collection
    (schemathesis builds the app's schema at import time)."""
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    if deselects_slow(config.getoption("markexpr")) and SLOW_MODULE.search(collection_path.read_text("utf-8")):
        return True
    return None


@pytest.fixture(autouse=True)
def _restore_mlflow_uris() -> Iterator[None]:
    """Undo what ``mlflow.set_tracking_uri`` leaves behind: a global and MLFLOW_TRACKING_URI in os.environ."""
    import mlflow

    before = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    yield
    if os.environ.get("MLFLOW_TRACKING_URI") != before["MLFLOW_TRACKING_URI"]:
        mlflow.set_tracking_uri(before["MLFLOW_TRACKING_URI"])  # type: ignore[arg-type]  # None unsets it
    if os.environ.get("MLFLOW_REGISTRY_URI") != before["MLFLOW_REGISTRY_URI"]:
        mlflow.set_registry_uri(before["MLFLOW_REGISTRY_URI"])  # type: ignore[arg-type]
        if before["MLFLOW_REGISTRY_URI"] is None:
            os.environ.pop("MLFLOW_REGISTRY_URI", None)


@pytest.fixture(scope="session")
def extracts() -> Path:
    """Folder of the real extracts: ``<year>/<official file name>.csv``."""
    return EXTRACTS


@pytest.fixture(scope="session")
def tables() -> dict[int, dict[str, pd.DataFrame]]:
    """Typed tables of the extracts, per year."""
    from pipeline.raw_tables import find_tables, read_year

    return {year: read_year(find_tables([EXTRACTS / str(year)])) for year in (2020, 2021)}


@pytest.fixture(scope="session")
def records(tables: dict[int, dict[str, pd.DataFrame]]) -> dict[int, pd.DataFrame]:
    """Accident records (with target) of the extracts, per year."""
    from pipeline.record_tables import records_from_tables

    return {year: records_from_tables(t) for year, t in tables.items()}


@pytest.fixture(scope="session")
def small_params() -> Params:
    """params.yaml with a small, fast model (single thread, few trees)."""
    from pipeline.config import Params, load_params

    base = load_params().model_dump(by_alias=True)
    base["train"]["n_jobs"] = 1
    base["train"]["xgb"].update(n_estimators=40, learning_rate=0.3, max_depth=3, early_stopping_rounds=10)
    return Params.model_validate(base)


@dataclass(frozen=True)
class Trained:
    """A model trained on the 2020 extract, evaluated on the 2021 extract."""

    model: LoadedModel
    model_dir: Path
    reports: Path
    metrics: dict[str, dict[str, float]]
    test: pd.DataFrame


@pytest.fixture(scope="session")
def trained(
    records: dict[int, pd.DataFrame], small_params: Params, tmp_path_factory: pytest.TempPathFactory
) -> Trained:
    """Fit -> threshold -> save -> evaluate, exactly as the DVC stages do."""
    import pandas as pd

    from pipeline.evaluate import write_reports
    from pipeline.model import load_local, save_local
    from pipeline.records import ID_COLUMN, TARGET
    from pipeline.register import reference_profile
    from pipeline.train import choose_threshold, fit, split_valid

    tp = small_params.train
    base = tmp_path_factory.mktemp("trained")
    train_records = records[2020]
    valid_mask = split_valid(train_records, tp.valid_fraction, tp.seed)
    fitted = fit(train_records, valid_mask, tp, small_params.features.max_vma)
    threshold = choose_threshold(train_records.loc[valid_mask, TARGET].to_numpy(), fitted.valid_proba, tp.threshold)
    model_dir = base / "models"
    save_local(
        model_dir,
        fitted.booster,
        fitted.spec,
        {
            "threshold": threshold,
            "best_iteration": fitted.best_iteration,
            "train_years": list(tp.train_years),
            "test_years": list(tp.test_years),
            "rows": {
                "fit": int((~valid_mask).sum()),
                "valid": int(valid_mask.sum()),
                "final_model": len(train_records) if fitted.refit else int((~valid_mask).sum()),
            },
        },
    )
    fit_predictions = pd.DataFrame(
        {
            ID_COLUMN: list(train_records.loc[~valid_mask, ID_COLUMN]) + list(train_records.loc[valid_mask, ID_COLUMN]),
            "split": ["train"] * int((~valid_mask).sum()) + ["valid"] * int(valid_mask.sum()),
            TARGET: list(train_records.loc[~valid_mask, TARGET]) + list(train_records.loc[valid_mask, TARGET]),
            "proba": list(fitted.fit_proba) + list(fitted.valid_proba),
        }
    )
    model = load_local(model_dir)
    model.profile = reference_profile(train_records, fit_predictions)  # registered with the model
    reports = base / "reports"
    metrics = write_reports(model, fit_predictions, records[2021], out=reports, train=train_records)
    return Trained(model, model_dir, reports, metrics, records[2021])


@pytest.fixture(scope="session")
def store_template(request: pytest.FixtureRequest) -> Path:
    """An empty MLflow SQLite store, made by MLflow itself and kept in pytest's cache (one per
    MLflow version). Opening a new database runs MLflow's schema migrations (seconds of CPU in
    every test process); a copy of this file is the same fresh store without them.
    ``ensure_store`` builds it whole or not at all, so two xdist workers may race for it."""
    import mlflow

    from pipeline.tracking_store import ensure_store

    db = request.config.cache.mkdir("mlflow-store") / f"mlflow-{mlflow.__version__}.db"
    ensure_store(f"sqlite:///{db}")
    return db


def copy_store(template: Path, folder: Path) -> str:
    """A fresh MLflow store in ``folder``, copied from the session's template; returns its URI."""
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "mlflow.db"
    shutil.copyfile(template, db)
    return f"sqlite:///{db}"


@pytest.fixture
def fresh_store(store_template: Path, tmp_path: Path) -> str:
    """The URI of an empty MLflow SQLite store of this test's own (``tmp_path/mlflow.db``)."""
    return copy_store(store_template, tmp_path)


@dataclass(frozen=True)
class Registry:
    """A temporary MLflow store holding the trained extract model as ``@champion``."""

    tracking_uri: str
    artifacts: Path
    model_name: str
    version: str
    run_id: str

    @property
    def champion_uri(self) -> str:
        return f"models:/{self.model_name}@champion"


@pytest.fixture(scope="session")
def registry(
    trained: Trained, small_params: Params, store_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    """Register the trained model in a fresh SQLite MLflow store; sets MLFLOW_TRACKING_URI."""
    from pipeline.config import Params
    from pipeline.register import log_and_register
    from pipeline.settings import PipelineSettings

    base = tmp_path_factory.mktemp("mlflow")
    uri = copy_store(store_template, base)
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    settings = PipelineSettings(mlflow_tracking_uri=uri, mlflow_artifacts_dir=str(base / "artifacts"))
    # A permissive gate: the extract model is small; gate logic is tested on its own.
    params = Params.model_validate(
        {
            **small_params.model_dump(by_alias=True),
            "registry": {"gate": {"min_roc_auc": 0.5, "min_f1": 0.1, "min_recall": 0.1}},
        }
    )
    outcome = log_and_register(trained.model, params, settings, trained.metrics, trained.test, reports=trained.reports)
    yield Registry(uri, base / "artifacts", settings.model_name, outcome["version"], outcome["run_id"])
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous
