"""A batch scoring recorded as a scoring run: drift counted block by block, logged to MLflow once published.

``Monitor`` counts every scored block against the model's training profile (``DriftCounts``,
bounded memory), then, once the outputs are in place, builds the ``ScoringRun`` and logs it with
the output files (``pipeline.monitoring.tracking.log_scoring_run``). A failed log is a warning:
the scoring itself succeeded.

The command line logs from the job's ``MlflowProcess`` (``pipeline.batch.loading``), the child
that looked the model up and so has MLflow imported already: recording costs no second
interpreter. With a model folder there is no such process: one is started once the first block
is counted (never when the model has no training profile, so nothing is monitored). The API,
which has MLflow loaded already, logs in its worker thread (``background=False``).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pipeline.batch.loading import MlflowProcess
from pipeline.monitoring.drift import DriftCounts, DriftThresholds

if TYPE_CHECKING:
    from pipeline.batch.batches import Batch
    from pipeline.model import LoadedModel
    from pipeline.monitoring.record import ScoringRun

log = logging.getLogger(__name__)

RunSource = Literal["cli", "dvc", "api"]


def artifact_location(tracking_uri: str, artifacts_dir: str | Path) -> str | None:
    """Where a new experiment's artifacts go: a tracking server has its own default (None); an embedded
    store keeps them in ``artifacts_dir``, relative to the SQLite file's folder (``mlartifacts`` beside
    ``mlflow.db`` by default, as ``pipeline.register`` does) or to the current folder."""
    folder = Path(artifacts_dir)
    if tracking_uri == "sqlite:///:memory:":  # a throwaway store (tests): its artifacts go to a temp folder
        return (Path(tempfile.gettempdir()) / "mlflow-memory-artifacts").as_uri()
    if tracking_uri.startswith("sqlite:///"):
        if not folder.is_absolute():
            folder = Path(tracking_uri.removeprefix("sqlite:///")).parent / folder
        return folder.resolve().as_uri()
    if tracking_uri.startswith("file:") or "://" not in tracking_uri:
        return folder.resolve().as_uri()
    return None


@dataclass(frozen=True)
class LogTarget:
    """Where scoring runs are logged."""

    tracking_uri: str
    experiment: str
    artifact_location: str | None = None


def log_run(record: ScoringRun, files: Mapping[str, Path], target: LogTarget) -> tuple[str | None, str | None]:
    """Log one run; returns (run id, None), or (None, why) when the tracking store refused or was unreachable."""
    from mlflow.exceptions import MlflowException

    from pipeline.monitoring.tracking import log_scoring_run

    try:
        run_id = log_scoring_run(
            record,
            files,
            target.experiment,
            tracking_uri=target.tracking_uri,
            artifact_location=target.artifact_location,
        )
    except (MlflowException, OSError, ValueError) as exc:  # requests' errors are OSErrors
        return None, f"{type(exc).__name__}: {exc}"[:2000]
    return run_id, None


def import_tracking() -> None:
    """Run in the MLflow process ahead of the log: the tracking module's own imports, while the job scores."""
    import pipeline.monitoring.tracking  # noqa: F401


@dataclass
class Monitor:
    """Drift counts of one scoring and, once it is published, its run in MLflow."""

    source: RunSource
    target: LogTarget
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)
    background: bool = True
    timeout_s: float = 120.0
    input_name: str | None = None
    run_id: str | None = None  # set once logged
    record: ScoringRun | None = None  # set once built
    _counts: DriftCounts | None = None
    _process: MlflowProcess | None = None
    _stack: contextlib.ExitStack | None = None

    def start(self, stack: contextlib.ExitStack, process: MlflowProcess | None = None) -> Monitor:
        """Log from ``process`` (the model lookup's, which has MLflow imported) when ``background``.

        Without one, a process is started with the first counted block (closing ``stack`` stops it).
        """
        if self.background:
            self._stack = stack
            self._process = process
            if process is not None:
                process.submit(import_tracking)
        return self

    def add(self, batch: Batch, model: LoadedModel) -> None:
        """Count one scored block (nothing when the model has no training profile)."""
        if model.profile is None or batch.records is None:
            return
        if self._counts is None:
            self._counts = DriftCounts(model.profile)
            if self._stack is not None and self._process is None:  # a model folder: MLflow not imported yet
                self._process = MlflowProcess(self._stack)
                self._process.submit(import_tracking)
        self._counts.add(batch.records, batch.proba)

    def build(
        self,
        summary: Mapping[str, Any],
        model: LoadedModel,
        proba: np.ndarray,
        started_at: datetime,
    ) -> ScoringRun | None:
        """The run's record from the summary and the counts (None when the model has no profile)."""
        from pipeline.monitoring.record import (
            InputSummary,
            ModelRef,
            ScoringRun,
            fingerprint,
            realized_from_summary,
            score_summary,
        )

        if model.profile is None:
            log.warning("model %s has no training profile: scoring run not recorded", model.version)
            return None
        counts = self._counts or DriftCounts(model.profile)
        files = {str(f["path"]): str(f["sha256"]) for f in summary["input"]["files"]}
        c = summary["counts"]
        self.record = ScoringRun(
            started_at=started_at,
            source=self.source,
            model=ModelRef(name=model.name, version=model.version, alias=model.alias, run_id=model.run_id),
            input=InputSummary(
                fingerprint=fingerprint(files),
                name=self.input_name or next(iter(files), None),
                files=files,
                input_rows=c["input_rows"],
                scored=c["scored"],
                rejected=c["rejected"],
            ),
            score=score_summary(proba, model.threshold),
            drift=counts.report(self.thresholds),
            # The summary's outcome metrics (same functions, same rows): not computed twice.
            realized=realized_from_summary(summary["outcome"]) if summary.get("outcome") else None,
            seconds=summary.get("timings_s", {}).get("total"),
        )
        return self.record

    def log(self, files: Mapping[str, Path]) -> str | None:
        """Log the built record with ``files`` (kind -> path); a failure is logged as a warning."""
        if self.record is None:
            return None
        try:
            if self._process is not None:
                future = self._process.submit(log_run, self.record, dict(files), self.target)
                run_id, error = future.result(timeout=self.timeout_s)
            else:
                run_id, error = log_run(self.record, files, self.target)
        except (FutureTimeout, BrokenProcessPool) as exc:
            run_id, error = None, f"logging process failed or took over {self.timeout_s:.0f} s ({exc!r})"
        if error is not None:
            log.warning("scoring run not recorded in %s: %s", self.target.tracking_uri, error)
            return None
        self.run_id = run_id
        log.info("scoring run %s recorded (verdict %s)", run_id, self.record.drift.verdict)
        return run_id
