"""Cost of recording a scoring run: the batch job with and without recording, in the same run.

On the bundled 2021 files (56,518 accidents): ``python -m pipeline.score data/bundled/baac/2021``
(as ``benchmarks.score`` times it) with recording (the default: drift counted block by block,
the run logged to MLflow with its three output files from the job's MLflow process, the one
that looked the model up) and with ``--no-record``, alternated so that both see the same
machine. Goal: recording adds <= 15 % to the job's wall time. The CPU time (the job and its
MLflow process, ``run_job``) is reported too: on a busy machine it tells what recording costs
when the wall time mostly tells how busy the machine was. The model is trained on 2020 with
params.yaml and registered with its training profile, as in ``benchmarks.score``; the tracking
store is SQLite in a temporary folder. Two cores, OMP_WAIT_POLICY=PASSIVE.
Run: ``python -m benchmarks monitoring``.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.score import ROOT, bundled_records, pinned_cores, register_model, run_job

RESULTS = ROOT / "benchmarks" / "results" / "monitoring.json"
REPEATS = 3
GOAL_RATIO = 0.15


def scoring_runs(tracking_uri: str, experiment: str) -> list[dict[str, Any]]:
    """The scoring runs logged so far: verdict and drivers."""
    from pipeline.monitoring.tracking import list_scoring_runs

    page = list_scoring_runs(experiment, tracking_uri=tracking_uri, max_results=100)
    return [{"verdict": r.verdict, "drivers": list(r.drivers)} for r in page.runs]


def run() -> dict[str, Any]:
    """Time the job with and without recording, print the ratio, save the numbers."""
    from pipeline.config import BUNDLED_DIR

    with pinned_cores() as cores, tempfile.TemporaryDirectory(prefix="bench-monitoring-") as tmp:
        work = Path(tmp)
        train, test = bundled_records(2020), bundled_records(2021)
        registered = register_model(work / "store", train, test)
        experiment = "bench-scoring"
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": registered["tracking_uri"],
            "MLFLOW_ARTIFACTS_DIR": str(work / "store" / "scoring-artifacts"),
            "MONITOR_EXPERIMENT": experiment,
            "LOG_LEVEL": "WARNING",
        }
        out = work / "raw" / "2021.parquet"
        args = [str(BUNDLED_DIR / "2021"), "--output", str(out)]
        plain: list[dict[str, Any]] = []
        recorded: list[dict[str, Any]] = []
        for _ in range(REPEATS):
            plain.append(run_job([*args, "--no-record"], env))
            recorded.append(run_job(args, env))
        runs = scoring_runs(registered["tracking_uri"], experiment)
    plain_s = statistics.median(r["seconds"] for r in plain)
    recorded_s = statistics.median(r["seconds"] for r in recorded)
    ratio = recorded_s / plain_s - 1
    plain_cpu = statistics.median(r["cpu_s"] for r in plain)
    recorded_cpu = statistics.median(r["cpu_s"] for r in recorded)
    results = {
        "rows": len(test),
        "no_record_runs_s": [round(r["seconds"], 3) for r in plain],
        "record_runs_s": [round(r["seconds"], 3) for r in recorded],
        "no_record_s": plain_s,
        "record_s": recorded_s,
        "no_record_cpu_runs_s": [round(r["cpu_s"], 3) for r in plain],
        "record_cpu_runs_s": [round(r["cpu_s"], 3) for r in recorded],
        "no_record_cpu_s": plain_cpu,
        "record_cpu_s": recorded_cpu,
        "ratio": ratio,
        "cpu_ratio": recorded_cpu / plain_cpu - 1,
        "loadavg": os.getloadavg(),
        "goal_ratio": GOAL_RATIO,
        "runs_logged": len(runs),
        "verdict": runs[0]["verdict"] if runs else None,
        "drivers": runs[0]["drivers"] if runs else [],
        "cores": cores,
    }
    print(
        f"2021 raw ({len(test):,} accidents): batch job median {plain_s:.2f} s without recording "
        f"{results['no_record_runs_s']}, {recorded_s:.2f} s with {results['record_runs_s']} -> "
        f"{ratio:+.1%} (goal <= {GOAL_RATIO:.0%}: {'ok' if ratio <= GOAL_RATIO else 'MISSED'}); CPU "
        f"{plain_cpu:.2f} s -> {recorded_cpu:.2f} s ({results['cpu_ratio']:+.1%}); load {os.getloadavg()[0]:.1f}; "
        f"{len(runs)} runs logged, verdict {results['verdict']} {results['drivers']}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    run()
