"""Scoring runs in MLflow: one run per scoring, in an experiment of their own, read back for the API.

Each run holds:

* params: model identity, input fingerprint, drift thresholds;
* metrics: row counts, score distribution, PSI of every field (``psi.<field>``), counts of
  fields on watch / alert, and the realized metrics when outcomes were known;
* tags: ``verdict``, ``drift.drivers``, ``model.version``, ``source`` (cli / dvc / api);
* artifacts: ``scoring_run.json`` (the whole record), ``drift/drift.csv`` and
  ``drift/drift.json`` (the drift table), and the output files under ``outputs/``, with
  ``outputs.json`` naming them.

Everything goes through ``MlflowClient``, never the fluent API's global active run, so that
the API can log from worker threads. Artifacts go where the experiment's artifact location
points: a local folder beside SQLite, or the tracking server's store (S3...).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run
from pydantic import BaseModel, ConfigDict

from pipeline.monitoring.record import ScoringRun

log = logging.getLogger(__name__)

EXPERIMENT = "accident-severity-scoring"
RECORD_FILE = "scoring_run.json"
OUTPUTS_FILE = "outputs.json"
OUTPUTS_DIR = "outputs"
KIND_TAG = "monitoring.kind"
MAX_PAGE = 1000  # runs per page read back at most


class RunSummary(BaseModel):
    """One scoring run as listed: what the run's tags and metrics say, no artifact read."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    run_id: str
    started_at: datetime
    source: str | None
    verdict: str | None
    drivers: tuple[str, ...]
    model_name: str | None
    model_version: str | None
    input_name: str | None = None
    metrics: dict[str, float]


class RunPage(BaseModel):
    """A page of scoring runs, newest first, and the token of the next page (None on the last)."""

    model_config = ConfigDict(frozen=True)

    runs: tuple[RunSummary, ...]
    next_page_token: str | None


class StoredRun(BaseModel):
    """A scoring run read back: its record, and where its output files are among its artifacts."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    artifact_uri: str
    record: ScoringRun
    outputs: dict[str, str]  # kind ("scored", "rejects", "summary"...) -> artifact path


def run_metrics(record: ScoringRun) -> dict[str, float]:
    """The numbers logged as MLflow metrics."""
    drift = record.drift
    counted = [d for d in drift.fields if d.counted]
    out: dict[str, float] = {
        "rows.input": record.input.input_rows,
        "rows.scored": record.input.scored,
        "rows.rejected": record.input.rejected,
        "score.mean": record.score.mean,
        "score.share_severe": record.score.share_severe,
        "drift.max_psi": max((d.psi for d in counted), default=0.0),
        "drift.n_watch": sum(d.status == "watch" for d in counted),
        "drift.n_alert": sum(d.status == "alert" for d in counted),
        **{f"psi.{d.field}": d.psi for d in (*drift.fields, drift.score)},
    }
    if record.seconds is not None:
        out["seconds"] = record.seconds
    if record.realized is not None:
        r = record.realized
        out |= {"realized.f1": r.f1, "realized.recall": r.recall, "realized.precision": r.precision}
        out |= {"realized.n": r.n, "realized.positives": r.positives}
        out |= {f"realized.{k}": v for k, v in r.confusion.items()}
        if r.roc_auc is not None:
            out["realized.roc_auc"] = r.roc_auc
    return {k: float(v) for k, v in out.items()}


def run_params(record: ScoringRun) -> dict[str, str]:
    """The run's params (strings, as MLflow stores them)."""
    t = record.drift.thresholds
    params: dict[str, Any] = {
        "model.name": record.model.name,
        "model.alias": record.model.alias,
        "model.run_id": record.model.run_id,
        "input.fingerprint": record.input.fingerprint,
        "input.files": ",".join(sorted(record.input.files)),
        "drift.psi_watch": t.psi_watch,
        "drift.psi_alert": t.psi_alert,
        "drift.min_rows": t.min_rows,
        "drift.ignore": ",".join(t.ignore),
        "score.threshold": record.score.threshold,
    }
    # MLflow params hold up to 6000 characters; longer values are cut, the full record is an artifact.
    return {k: str(v)[:500] for k, v in params.items() if v is not None}


def run_tags(record: ScoringRun) -> dict[str, str]:
    """The run's tags: what a list of runs filters and shows."""
    return {
        KIND_TAG: "scoring",
        "source": record.source,
        "verdict": record.drift.verdict,
        "drift.drivers": ",".join(record.drift.drivers)[:5000],
        "model.name": record.model.name or "",
        "model.version": record.model.version or "",
        "input.name": (record.input.name or "")[:500],
    }


def experiment_id(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    """The id of the scoring experiment, created on first use."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    return str(client.create_experiment(name, artifact_location=artifact_location))


def log_scoring_run(
    record: ScoringRun,
    files: Mapping[str, Path],
    experiment: str = EXPERIMENT,
    *,
    tracking_uri: str | None = None,
    artifact_location: str | None = None,
) -> str:
    """Store one scoring run in MLflow, with ``files`` (kind -> path) as artifacts; returns the run id.

    ``artifact_location`` applies only when the experiment does not exist yet (an embedded
    SQLite store needs one; a tracking server has its own default). The run ends FINISHED
    when everything is logged, FAILED if logging broke halfway.
    """
    client = MlflowClient(tracking_uri)
    exp_id = experiment_id(client, experiment, artifact_location)
    start_ms = int(record.started_at.timestamp() * 1000)
    run = client.create_run(exp_id, start_time=start_ms, tags=run_tags(record), run_name=_run_name(record))
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, 0) for k, v in run_metrics(record).items()],
            params=[Param(k, v) for k, v in run_params(record).items()],
        )
        client.log_text(run_id, record.model_dump_json(indent=1), RECORD_FILE)
        client.log_text(run_id, record.drift.model_dump_json(indent=1), "drift/drift.json")
        outputs = {kind: f"{OUTPUTS_DIR}/{Path(path).name}" for kind, path in files.items()}
        with tempfile.TemporaryDirectory(prefix="scoring-run-") as tmp:
            table = Path(tmp) / "drift.csv"
            record.drift.table().to_csv(table, index=False)
            client.log_artifact(run_id, str(table), "drift")
        for path in files.values():
            client.log_artifact(run_id, str(path), OUTPUTS_DIR)
        client.log_text(run_id, json.dumps(outputs, indent=1, sort_keys=True), OUTPUTS_FILE)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    log.info("scoring run %s logged (%s, verdict %s)", run_id, record.source, record.drift.verdict)
    return run_id


def _run_name(record: ScoringRun) -> str:
    version = record.model.version or "?"
    return f"{record.source} {record.started_at:%Y-%m-%d %H:%M:%S} v{version}"


def _summary(run: Run) -> RunSummary:
    tags = run.data.tags
    drivers = tags.get("drift.drivers", "")
    return RunSummary(
        run_id=run.info.run_id,
        started_at=datetime.fromtimestamp(run.info.start_time / 1000).astimezone(),
        source=tags.get("source"),
        verdict=tags.get("verdict"),
        drivers=tuple(d for d in drivers.split(",") if d),
        model_name=tags.get("model.name") or None,
        model_version=tags.get("model.version") or None,
        input_name=tags.get("input.name") or None,
        metrics=dict(run.data.metrics),
    )


def list_scoring_runs(
    experiment: str = EXPERIMENT,
    *,
    tracking_uri: str | None = None,
    max_results: int = 50,
    page_token: str | None = None,
    source: str | None = None,
) -> RunPage:
    """Scoring runs, newest first, a page of at most ``max_results`` (1..``MAX_PAGE``) at a time."""
    if not 1 <= max_results <= MAX_PAGE:
        raise ValueError(f"max_results must be between 1 and {MAX_PAGE}, not {max_results}")
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return RunPage(runs=(), next_page_token=None)
    query = f"tags.`{KIND_TAG}` = 'scoring'"
    if source is not None:
        if source not in ("cli", "dvc", "api"):
            raise ValueError(f"unknown source {source!r}")
        query += f" and tags.source = '{source}'"
    page = client.search_runs(
        [found.experiment_id],
        filter_string=query,
        max_results=max_results,
        order_by=["attributes.start_time DESC"],
        page_token=page_token,
    )
    return RunPage(runs=tuple(_summary(r) for r in page), next_page_token=page.token or None)


def get_scoring_run(run_id: str, *, tracking_uri: str | None = None) -> StoredRun:
    """One scoring run's record and output paths, read from its artifacts."""
    client = MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    with tempfile.TemporaryDirectory(prefix="scoring-run-") as tmp:
        record_path = client.download_artifacts(run_id, RECORD_FILE, tmp)
        outputs_path = client.download_artifacts(run_id, OUTPUTS_FILE, tmp)
        record = ScoringRun.model_validate_json(Path(record_path).read_text(encoding="utf-8"))
        outputs = json.loads(Path(outputs_path).read_text(encoding="utf-8"))
    return StoredRun(run_id=run_id, artifact_uri=str(run.info.artifact_uri), record=record, outputs=outputs)


def download_output(run_id: str, kind: str, dest: Path, *, tracking_uri: str | None = None) -> Path:
    """Fetch one output file of a scoring run (by kind) into folder ``dest``; returns its path."""
    stored = get_scoring_run(run_id, tracking_uri=tracking_uri)
    if kind not in stored.outputs:
        raise KeyError(f"run {run_id} has no output {kind!r} (it has {sorted(stored.outputs)})")
    dest.mkdir(parents=True, exist_ok=True)
    return Path(MlflowClient(tracking_uri).download_artifacts(run_id, stored.outputs[kind], str(dest)))
