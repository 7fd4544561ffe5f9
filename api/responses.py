"""Response bodies of the API's routes (``response_model``); the error body is ``api.schemas.ErrorResponse``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from api.schemas import LabelName, Scalar
from pipeline.slice_schema import SliceReport


class ModelIdentity(BaseModel):
    """Which registered model answered."""

    name: str | None
    version: str | None
    alias: str | None
    run_id: str | None
    threshold: float


class HealthResponse(BaseModel):
    """Liveness."""

    status: Literal["ok"]


class ReadyResponse(BaseModel):
    """Readiness: a model is loaded and serving."""

    status: Literal["ready"]
    model: ModelIdentity
    loaded_at: float = Field(description="Unix time the model was loaded.")


# --- /predict


class Factor(BaseModel):
    """One feature's contribution to a prediction (SHAP value, in log-odds)."""

    feature: str
    label_fr: str
    label_en: str
    value: Scalar = Field(description="The feature's value for this accident.")
    value_label: str | None = Field(None, description="Codebook label of the value, when it is a code.")
    contribution: float = Field(description="Log-odds added to the prediction by this feature.")
    direction: Literal["increases", "decreases"] = Field(description="Effect on the severity risk.")


class Explanation(BaseModel):
    """Top contributing factors; ``base_log_odds`` plus every contribution gives the log-odds."""

    base_log_odds: float
    factors: list[Factor]


class Prediction(BaseModel):
    """The severity prediction for one accident."""

    probability: float = Field(ge=0, le=1, description="Probability that someone was killed or hospitalised.")
    label: Literal[0, 1]
    label_name: LabelName
    threshold: float


class PredictionResponse(Prediction):
    """One prediction, the model that made it and, on request, its top factors."""

    model: ModelIdentity
    explanation: Explanation | None = None


class BatchResponse(BaseModel):
    """Predictions in the order of the records."""

    model: ModelIdentity
    count: int
    predictions: list[Prediction]


# --- /model


class CodeInfo(BaseModel):
    """An allowed code and its codebook label."""

    code: int | str
    label: str


class FieldInfo(BaseModel):
    """One field of the accident record, for forms."""

    name: str
    kind: Literal["code", "int", "float", "dep", "com"]
    type: Literal["integer", "number", "string"]
    group: str
    label_fr: str
    label_en: str
    codes: list[CodeInfo] | None = Field(None, description="Allowed codes (coded fields and departments).")
    minimum: float | None
    maximum: float | None
    optional: bool = Field(description="Whether null (unknown) is accepted.")
    default: Scalar


class DerivedFeature(BaseModel):
    """A model feature computed from the record."""

    name: str
    label_fr: str
    label_en: str


class TrainingInfo(BaseModel):
    """What the model was trained on, when the run recorded it."""

    train_years: list[int] | None = None
    test_years: list[int] | None = None
    rows: dict[str, int] | None = None
    best_iteration: int | None = None
    n_trees: int | None = None
    threshold_policy: dict[str, Any] | None = None


class GateInfo(BaseModel):
    """The promotion gate the model was registered with: thresholds, outcome and reasons (from the model)."""

    thresholds: dict[str, float] | None = None
    passed: bool | None = None
    reasons: list[str] = Field(default_factory=list)


class LoadingInfo(BaseModel):
    """How the model is registered and how to load it outside this API."""

    flavor: str = Field(description="MLflow flavour of the registered model.")
    uri: str = Field(description="Model URI in the MLflow registry.")
    python: str = Field(description="Load and score in Python (pandas frame of accident records).")
    spark: str = Field(description="Score a Spark DataFrame of accident records.")
    serve: str = Field(description="Serve it over HTTP with MLflow's scoring server (/invocations).")


class Limits(BaseModel):
    """The input limits the API enforces (deployment settings), for clients to check first."""

    max_upload_bytes: int = Field(description="Largest accepted request body (``API_MAX_UPLOAD_MB``).")
    max_batch: int = Field(description="Most records in one ``POST /predict/batch`` (``API_MAX_BATCH``).")
    max_json_bytes: int = Field(description="Largest JSON request body (``API_MAX_JSON_MB``).")
    max_expanded_bytes: int | None = Field(
        description="CSV bytes one upload may expand to once unzipped and gunzipped, all members together "
        "(``API_MAX_EXPANDED_MB``)."
    )
    max_upload_rows: int | None = Field(description="Data rows of one uploaded file (``API_MAX_UPLOAD_ROWS``).")
    max_concurrent_jobs: int = Field(
        description="File-scoring jobs at once; more get 429 with Retry-After (``API_MAX_CONCURRENT_JOBS``)."
    )


class Scenario(BaseModel):
    """A real, typical accident of the training data: in the commune with most training accidents,
    the one (with every optional field known) matching the most of that commune's per-field modes."""

    accident_id: str = Field(description="BAAC accident number (``Num_Acc``).")
    severe: Literal[0, 1] = Field(description="Whether it was severe.")
    com: str
    place_name: str | None = Field(None, description="The commune's name, from the official list.")
    commune_accidents: int = Field(description="Training accidents in that commune.")
    fields_compared: int
    fields_matching_mode: int = Field(description="Fields equal to the commune's most common value.")
    unknown_fields: int = Field(description="Optional fields left unknown (null) in the record.")
    record: dict[str, Scalar]


class ModelInfo(ModelIdentity):
    """The served model: identity, metrics by split, training data and the record schema."""

    source: str
    loaded_at: float
    codebook_version: str
    metrics: dict[str, dict[str, Scalar]] = Field(description="Metrics by split (train, valid, test).")
    training: TrainingInfo
    gate: GateInfo | None
    loading: LoadingInfo | None = None
    feature_columns: list[str]
    features: list[FieldInfo]
    derived_features: list[DerivedFeature]
    seed_project: dict[str, float] = Field(
        description="The seed project's published XGBoost metrics (random split of 2021, leaky features)."
    )
    scenario: Scenario | None = Field(None, description="A typical real training accident (What-if default).")
    limits: Limits


# --- /places


class Place(BaseModel):
    """A commune (or a Paris, Lyon or Marseille arrondissement) with its INSEE code."""

    code: str = Field(description="INSEE code, the record's ``com``.")
    name: str
    dep: str = Field(description="Département code, the record's ``dep``.")
    type: Literal["commune-actuelle", "arrondissement-municipal"]
    population: int | None
    accidents: int = Field(description="Accidents of the training years in this place.")
    lat: float | None = Field(None, description="Median latitude of those accidents (null when none).")
    long: float | None = Field(None, description="Median longitude of those accidents (null when none).")


class PlacesResponse(BaseModel):
    """Places matching a search, most training accidents first."""

    query: str
    total: int = Field(description="Places matching the query.")
    places: list[Place]


# --- /model/evaluation


class Confusion(BaseModel):
    """Confusion counts."""

    tn: int
    fp: int
    fn: int
    tp: int


class RocPoint(BaseModel):
    """A point of the ROC curve."""

    fpr: float
    tpr: float
    threshold: float


class PrPoint(BaseModel):
    """A point of the precision-recall curve."""

    recall: float
    precision: float
    threshold: float


class ThresholdRow(BaseModel):
    """Confusion counts and rates at one threshold."""

    threshold: float
    tn: int
    fp: int
    fn: int
    tp: int
    accuracy: float
    precision: float
    recall: float
    f1: float


class Importance(BaseModel):
    """Total gain of one feature."""

    feature: str
    label_fr: str
    label_en: str
    gain: float
    share: float


class CalibrationBin(BaseModel):
    """One decile of predicted probability: its mean prediction and observed severe rate."""

    bin: int
    n: int
    predicted: float
    observed: float


class CalibrationCurve(BaseModel):
    """Reliability diagram of one split and its expected calibration error."""

    split: Literal["valid", "test"]
    ece: float | None = Field(description="Count-weighted mean |predicted - observed| over the deciles.")
    bins: list[CalibrationBin]


class EvaluationResponse(BaseModel):
    """Test-year evaluation of the served model, logged with its MLflow run."""

    model: ModelIdentity
    split: Literal["test"]
    test_years: list[int] | None
    threshold: float
    confusion: Confusion = Field(description="At the model threshold.")
    metrics: dict[str, Scalar]
    roc: list[RocPoint]
    pr: list[PrPoint]
    thresholds: list[ThresholdRow] = Field(description="Thresholds 0 to 1 by 0.01.")
    feature_importance: list[Importance]
    calibration: list[CalibrationCurve] = Field(
        default_factory=list, description="Reliability diagram and ECE of the validation and test splits."
    )
    slices: SliceReport | None = Field(None, description="Test-year metrics per slice, with the weak ones flagged.")


# --- /score/file


class Downloads(BaseModel):
    """Where to fetch the full outputs of a scoring job."""

    parquet: str
    csv: str
    rejects_csv: str


class ScoreResponse(BaseModel):
    """A scored file: summary, rejected lines, and one page of the scored rows."""

    job_id: str
    model: ModelIdentity
    summary: dict[str, Any]
    rejects: list[dict[str, Any]] = Field(description="Rejected cells (the first 1000).")
    rejects_total: int
    page: int
    page_size: int
    pages: int
    rows_total: int
    rows: list[dict[str, Any]]
    downloads: Downloads


# --- /admin


class ReloadResponse(BaseModel):
    """Outcome of a successful reload."""

    status: Literal["reloaded"]
    previous: ModelIdentity | None
    model: ModelIdentity
