"""The registered model as an MLflow pyfunc over accident records.

Its input is the accident record as ``pipeline.records`` defines it (one row per accident, the
columns of the flat CSV and of the API; a missing column or a missing value of a field that
has a default takes that default); its output is the probability that the accident is severe
and the label at the model's threshold. ``mlflow.pyfunc.load_model``, ``mlflow models serve``
and ``mlflow.pyfunc.spark_udf`` all run it; inside, it is the same ``LoadedModel`` over the same
model folder (the ``model`` artifact) that the API and the batch job load directly.

The ``pipeline`` package travels with the model (``code_paths``) and ``flavor_entry.py`` is
the "models from code" file MLflow executes to build it.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext, log_model
from mlflow.types import ColSpec, Schema

from pipeline.model import MODEL_ARTIFACT, LoadedModel, load_local
from pipeline.records import RECORD_FIELDS, FieldSpec

log = logging.getLogger(__name__)

PACKAGE = Path(__file__).resolve().parent
ENTRY_FILE = PACKAGE / "flavor_entry.py"
OUTPUT_COLUMNS: tuple[str, str] = ("probability", "label")
# Spark result type of ``mlflow.pyfunc.spark_udf`` for this model: one struct per accident.
SPARK_RESULT_TYPE = "probability double, label int"
# What the pyfunc imports, pinned to the versions that trained and registered the model.
REQUIREMENTS: tuple[str, ...] = (
    "mlflow-skinny",
    "xgboost-cpu",
    "scikit-learn",
    "scipy",
    "numpy",
    "pandas",
    "pyarrow",
    "pydantic",
    "pyyaml",
)


def _column_type(spec: FieldSpec) -> str:
    """MLflow type of a record field: codes and counts are integers, unless they may be unknown."""
    if spec.kind in ("dep", "com"):
        return "string"
    if spec.kind == "float" or spec.optional:
        return "double"  # an unknown value is NaN, which an integer column cannot hold
    return "long"


_DTYPES: Mapping[str, str] = {"string": "object", "double": "float64", "long": "int64"}


def record_signature() -> ModelSignature:
    """Input: the record fields, each optional (defaults apply); output: probability and label."""
    inputs = Schema([ColSpec(_column_type(spec), spec.name, required=False) for spec in RECORD_FIELDS])
    outputs = Schema([ColSpec("double", OUTPUT_COLUMNS[0]), ColSpec("long", OUTPUT_COLUMNS[1])])
    return ModelSignature(inputs=inputs, outputs=outputs)


def complete_records(frame: pd.DataFrame) -> pd.DataFrame:
    """The record columns of ``frame``, in order; a missing column takes the field's default.

    As in the API, where a missing field takes its default. A missing value (null) is allowed
    only in optional fields, where it means unknown: the signature makes the others integers.
    """
    columns = {
        spec.name: frame[spec.name]
        if spec.name in frame.columns
        else pd.Series([spec.default] * len(frame), index=frame.index, dtype=_DTYPES[_column_type(spec)])
        for spec in RECORD_FIELDS
    }
    return pd.DataFrame(columns, index=frame.index)


class AccidentSeverityModel(PythonModel):
    """Accident records in, ``probability`` and ``label`` (at the model's threshold) out."""

    model: LoadedModel

    def load_context(self, context: PythonModelContext) -> None:
        """Load the model folder, the artifact the API and the batch job also load."""
        self.model = load_local(Path(context.artifacts[MODEL_ARTIFACT]))

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Score a frame of accident records."""
        proba = self.model.predict_frame(complete_records(model_input)) if len(model_input) else np.empty(0)
        return pd.DataFrame(
            {OUTPUT_COLUMNS[0]: proba, OUTPUT_COLUMNS[1]: (proba >= self.model.threshold).astype(np.int64)},
            index=model_input.index,
        )


def pip_requirements() -> list[str]:
    """The pyfunc's requirements, pinned to this environment's versions."""
    return [f"{pkg}=={version(pkg)}" for pkg in REQUIREMENTS]


def _code_copy(dest: Path) -> Path:
    """A copy of the ``pipeline`` package without byte code, for ``code_paths``."""
    target = dest / PACKAGE.name
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def log_pyfunc(
    model_folder: Path,
    work: Path,
    input_example: pd.DataFrame,
    metadata: Mapping[str, Any],
) -> Any:
    """Log the pyfunc in the active run: the model folder as its artifact, the feature code with it.

    Returns MLflow's ``ModelInfo``.
    """
    return log_model(
        name="model",
        python_model=str(ENTRY_FILE),
        artifacts={MODEL_ARTIFACT: str(model_folder)},
        code_paths=[str(_code_copy(work / "code"))],
        signature=record_signature(),
        input_example=input_example,
        pip_requirements=pip_requirements(),
        metadata=dict(metadata),
    )


def usage(uri: str) -> dict[str, str]:
    """How to load the registered model outside this code base (for the model card)."""
    return {
        "flavor": "python_function",
        "uri": uri,
        "python": f"mlflow.pyfunc.load_model({uri!r}).predict(records_frame)",
        "spark": f"mlflow.pyfunc.spark_udf(spark, {uri!r}, result_type={SPARK_RESULT_TYPE!r})",
        "serve": f"mlflow models serve -m {uri} --env-manager local",
    }
