"""Cost of recording a scoring run, against the batch job it records.

On the bundled 2021 files (56,518 accidents): the batch job end to end
(``python -m pipeline.score data/bundled/baac/2021``, as ``benchmarks.score`` times it),
then, in this process, what recording adds: the drift report and run record
(``pipeline.monitoring.scoring_run``: drift of every field, score summary, realized metrics)
and ``log_scoring_run`` to a SQLite MLflow store in a temporary folder, with the job's three
output files as artifacts. Goal: recording adds <= 15 % to the job's time.

The job loads MLflow in a child process only; recording in the job's process would import
``pipeline.monitoring.tracking`` (MLflow) too, so that import is measured in a fresh
interpreter and counted. The profile (made once at training time) is timed but not counted.

Model: trained on 2020 with params.yaml and registered, as in ``benchmarks.score``.
Two cores, OMP_WAIT_POLICY=PASSIVE. Run: ``python -m benchmarks monitoring``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.score import ROOT, bundled_records, pinned_cores, register_model, run_job

RESULTS = ROOT / "benchmarks" / "results" / "monitoring.json"
REPEATS = 3
GOAL_RATIO = 0.15


def import_cost(env: dict[str, str]) -> float:
    """Seconds that importing the MLflow logging adds to a process that has imported the batch job."""

    def timed(code: str) -> float:
        runs = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
            runs.append(time.perf_counter() - start)
        return statistics.median(runs)

    return max(0.0, timed("import pipeline.score, pipeline.monitoring.tracking") - timed("import pipeline.score"))


def record_once(model: Any, profile: Any, test: Any, proba: Any, outputs: dict[str, Path], store: Path) -> dict:
    """Build the run record and log it; seconds of each step."""
    from pipeline.monitoring import InputSummary, ModelRef, fingerprint, scoring_run
    from pipeline.monitoring.tracking import log_scoring_run
    from pipeline.records import TARGET

    files = {path.name: "0" * 64 for path in outputs.values()}
    start = time.perf_counter()
    record = scoring_run(
        started_at=datetime.now(UTC),
        source="cli",
        model=ModelRef(name=model.name, version=model.version, alias=model.alias, run_id=model.run_id),
        input=InputSummary(
            fingerprint=fingerprint(files), files=files, input_rows=len(test), scored=len(test), rejected=0
        ),
        profile=profile,
        records=test,
        proba=proba,
        threshold=model.threshold,
        outcomes=test[TARGET].to_numpy(),
    )
    built = time.perf_counter()
    log_scoring_run(
        record,
        outputs,
        tracking_uri=f"sqlite:///{store / 'monitoring.db'}",
        artifact_location=(store / "monitoring-artifacts").as_uri(),
    )
    return {"record_s": built - start, "log_s": time.perf_counter() - built, "verdict": record.drift.verdict}


def run() -> dict[str, Any]:
    """Time the job and the recording, print the ratio, save the numbers."""
    from pipeline.config import BUNDLED_DIR
    from pipeline.model import load_model
    from pipeline.monitoring import build_profile

    with pinned_cores() as cores, tempfile.TemporaryDirectory(prefix="bench-monitoring-") as tmp:
        work = Path(tmp)
        train, test = bundled_records(2020), bundled_records(2021)
        registered = register_model(work / "store", train, test)
        env = {**os.environ, "MLFLOW_TRACKING_URI": registered["tracking_uri"], "LOG_LEVEL": "WARNING"}
        out = work / "raw" / "2021.parquet"
        jobs = [run_job([str(BUNDLED_DIR / "2021"), "--output", str(out)], env)["seconds"] for _ in range(REPEATS)]
        outputs = {
            "scored": out,
            "rejects": out.with_name("2021.rejects.csv"),
            "summary": out.with_name("2021.summary.json"),
        }
        model = load_model("models:/accident-severity@champion", registered["tracking_uri"])
        start = time.perf_counter()
        profile = build_profile(train, model.predict_frame(train))
        profile_s = time.perf_counter() - start
        proba = model.predict_frame(test)
        records = [record_once(model, profile, test, proba, outputs, work) for _ in range(REPEATS)]
        imports = import_cost(env)
    job_s = statistics.median(jobs)
    record_s = statistics.median(r["record_s"] for r in records)
    log_s = statistics.median(r["log_s"] for r in records)
    ratio = (record_s + log_s + imports) / job_s
    results = {
        "rows": len(test),
        "job_runs_s": [round(j, 3) for j in jobs],
        "job_s": job_s,
        "profile_s": profile_s,
        "record_s": record_s,
        "log_s": log_s,
        "import_s": imports,
        "ratio": ratio,
        "goal_ratio": GOAL_RATIO,
        "verdict": records[0]["verdict"],
        "cores": cores,
    }
    print(
        f"2021 raw ({len(test):,} accidents): batch job median {job_s:.2f} s of {results['job_runs_s']}; "
        f"recording: drift + record {record_s:.2f} s, log to MLflow {log_s:.2f} s, MLflow import {imports:.2f} s "
        f"-> +{ratio:.1%} of the job (goal <= {GOAL_RATIO:.0%}: {'ok' if ratio <= GOAL_RATIO else 'MISSED'}); "
        f"profile of 2020 at training time {profile_s:.2f} s; verdict {results['verdict']}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    run()
