"""What the served model is, what it expects, and how well it did on the test year."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, HTTPException, status

from api.deps import ServingDep, SettingsDep
from api.explain import DERIVED_LABELS, feature_label
from api.responses import (
    CodeInfo,
    DerivedFeature,
    EvaluationResponse,
    FieldInfo,
    GateInfo,
    Importance,
    Limits,
    LoadingInfo,
    ModelInfo,
    Scenario,
    TrainingInfo,
)
from api.routes.places import index_for
from api.schemas import NO_MODEL, ErrorResponse
from api.services.scoring import upload_limits
from api.settings import Settings
from pipeline.flavor import usage
from pipeline.metrics import SEED_PROJECT
from pipeline.model import LoadedModel
from pipeline.records import RECORD_FIELDS, FieldSpec

log = logging.getLogger(__name__)
router = APIRouter(tags=["model"])

_TYPES: dict[str, Any] = {"code": "integer", "int": "integer", "float": "number", "dep": "string", "com": "string"}


def _field_info(spec: FieldSpec) -> FieldInfo:
    codes = None
    if spec.kind == "code":
        codes = [CodeInfo(code=int(code), label=label) for code, label in spec.labels().items()]
    elif spec.kind == "dep":
        codes = [CodeInfo(code=code, label=str(code)) for code in spec.allowed()]
    return FieldInfo(
        name=spec.name,
        kind=spec.kind,
        type=_TYPES[spec.kind],
        group=spec.group,
        label_fr=spec.fr,
        label_en=spec.en,
        codes=codes,
        minimum=spec.minimum,
        maximum=spec.maximum,
        optional=spec.optional,
        default=spec.default,
    )


@lru_cache(maxsize=1)
def record_schema() -> tuple[FieldInfo, ...]:
    """The accident record's fields, with labels and allowed codes (static: built once)."""
    return tuple(_field_info(spec) for spec in RECORD_FIELDS)


def gate_info(model: LoadedModel) -> GateInfo | None:
    """The promotion gate registered with the model (None for a model folder never registered)."""
    gate = model.gate
    if gate is None:
        return None
    return GateInfo(thresholds=gate.get("thresholds"), passed=gate.get("passed"), reasons=list(gate.get("reasons", [])))


def loading_info(model: LoadedModel) -> LoadingInfo | None:
    """Which flavour is registered and how to load it (None for a model folder never registered)."""
    if model.name is None:
        return None
    ref = f"@{model.alias}" if model.alias else f"/{model.version}"
    return LoadingInfo.model_validate(usage(f"models:/{model.name}{ref}"))


def scenario(serving: ServingDep) -> Scenario | None:
    """The typical training accident logged with the model, named from the official list."""
    evaluation = serving.evaluation
    if evaluation is None or evaluation.scenario is None:
        return None
    place = index_for(evaluation).get(str(evaluation.scenario["com"]))
    return Scenario.model_validate({**evaluation.scenario, "place_name": place.name if place else None})


def limits(settings: Settings) -> Limits:
    """The limits in force: the upload ones as the jobs get them (``upload_limits``)."""
    upload = upload_limits(settings)
    return Limits(
        max_upload_bytes=settings.max_upload_bytes,
        max_batch=settings.max_batch,
        max_json_bytes=settings.max_json_bytes,
        max_expanded_bytes=upload.max_expanded_bytes,
        max_upload_rows=upload.max_rows,
        max_concurrent_jobs=settings.max_concurrent_jobs,
    )


@router.get("/model", response_model=ModelInfo, summary="The served model", responses=NO_MODEL)
async def model_info(serving: ServingDep, settings: SettingsDep) -> ModelInfo:
    """Identity, training metrics by split, training data, the gate it was registered with, how
    to load it outside the API (MLflow pyfunc, Spark), the seed project's numbers, a typical real
    accident, the input limits, and the record schema with French and English labels and the
    allowed codes of every field (``GET /places`` looks commune codes up by name)."""
    model = serving.model
    info = model.info
    return ModelInfo(
        **serving.identity.model_dump(),
        source=model.source,
        loaded_at=serving.loaded_at,
        codebook_version=model.spec.codebook_version,
        metrics=info.get("metrics", {}),
        training=TrainingInfo.model_validate({key: info.get(key) for key in TrainingInfo.model_fields}),
        gate=gate_info(model),
        loading=loading_info(model),
        feature_columns=list(model.spec.columns),
        features=list(record_schema()),
        derived_features=[
            DerivedFeature(name=name, label_fr=fr, label_en=en)
            for name, (fr, en) in DERIVED_LABELS.items()
            if name in model.spec.columns
        ],
        seed_project=SEED_PROJECT,
        scenario=scenario(serving),
        limits=limits(settings),
    )


@router.get(
    "/model/evaluation",
    response_model=EvaluationResponse,
    summary="Test-year evaluation",
    responses={
        **NO_MODEL,
        404: {"model": ErrorResponse, "description": "The model's run logged no evaluation artifacts."},
    },
)
async def model_evaluation(serving: ServingDep) -> EvaluationResponse:
    """Confusion matrix at the model threshold, ROC and PR curves, the per-threshold table
    (0 to 1 by 0.01, to recompute the matrix at any threshold), feature importance, the
    reliability diagram and ECE of the validation and test splits, and metrics per slice."""
    evaluation = serving.evaluation
    if evaluation is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"model version {serving.identity.version} has no evaluation artifacts in its MLflow run",
        )
    test = evaluation.metrics["test"]
    return EvaluationResponse.model_validate(
        {
            "model": serving.identity,
            "split": "test",
            "test_years": serving.model.info.get("test_years"),
            "threshold": serving.model.threshold,
            "confusion": evaluation.confusion("test"),
            "metrics": test,
            "roc": evaluation.roc,
            "pr": evaluation.pr,
            "thresholds": evaluation.thresholds,
            "feature_importance": [
                Importance(
                    feature=row["feature"],
                    label_fr=feature_label(row["feature"])[0],
                    label_en=feature_label(row["feature"])[1],
                    gain=row["gain"],
                    share=row["share"],
                )
                for row in evaluation.importance
            ],
            "calibration": [
                {"split": split, "ece": evaluation.metrics.get(split, {}).get("ece"), "bins": bins}
                for split, bins in evaluation.calibration.items()
            ],
            "slices": evaluation.slices,
        }
    )
