"""Batch scoring speed: ``python -m pipeline.score`` end to end, as a subprocess (process start included).

* raw: the bundled 2021 files (56,518 accidents). Goal: 3 s or less.
* flat: 1,000,000 accident records resampled with replacement (fixed seed) from the real 2021
  records (``records_from_tables`` on the bundled files) and renumbered 1..N, since resampling
  repeats ids; written to a temporary CSV. Goals: >= 100,000 rows/s, peak RSS <= 1.5 GB, and
  at most 2x a bare ``Booster.inplace_predict`` on the same records' matrix, timed in this run
  (each timed three times, alternately; the ratio is of the medians).
* floor, for both: the CPU of the work no job of that input can skip, each part timed alone
  (``floor_cpu``: interpreter and imports, the MLflow lookup, the library's parse of the input,
  the bare prediction), divided by the cores; what the job spends beyond it is its own cost.

The model is trained here on the bundled 2020 files with params.yaml's ``train`` section (the
production configuration, through ``pipeline.train``'s functions), evaluated on 2021 and
registered with ``pipeline.register.log_and_register`` as ``accident-severity@champion`` in a
temporary SQLite MLflow store; the job loads it from there, like the DVC stage does. The
repo's ``mlflow.db``, ``models/`` and ``reports/`` are never read nor touched.

Two cores (CPU affinity of this process and its children), OMP_WAIT_POLICY=PASSIVE.
Run: ``python -m benchmarks.score`` (or through ``python -m benchmarks``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from benchmarks.probes import tree_rss

os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "score.json"
CORES = 2
FLAT_ROWS = 1_000_000
RAW_REPEATS = 3
FLAT_REPEATS = 3
BLOCK_ROWS = 40_000  # about what one 8 MiB block of the CSV holds
UNTHREADED = pa_csv.ReadOptions(use_threads=False)
SEMICOLON = pa_csv.ParseOptions(delimiter=";")
GOALS = {"raw_s": 3.0, "flat_rows_per_s": 100_000.0, "flat_peak_rss_gb": 1.5, "flat_ratio": 2.0}


@contextmanager
def pinned_cores(n: int = CORES) -> Iterator[list[int]]:
    """Restrict this process (and the jobs it starts) to ``n`` cores; restored afterwards."""
    if not hasattr(os, "sched_setaffinity"):
        yield []
        return
    before = os.sched_getaffinity(0)
    cores = sorted(before)[:n]
    os.sched_setaffinity(0, cores)
    try:
        yield cores
    finally:
        os.sched_setaffinity(0, before)


def bundled_records(year: int) -> pd.DataFrame:
    """Accident records (with target) of a bundled year, built as the pipeline builds them."""
    from pipeline.config import BUNDLED_DIR, load_params
    from pipeline.raw_tables import find_tables, read_year
    from pipeline.record_tables import records_from_tables

    tables = read_year(find_tables([BUNDLED_DIR / str(year)]))
    return records_from_tables(tables, max_vma=load_params().features.max_vma)


def register_model(store: Path, train: pd.DataFrame, test: pd.DataFrame) -> dict[str, Any]:
    """Train on ``train`` with params.yaml, evaluate on ``test``, register as champion in ``store``."""
    from pipeline.config import Params, load_params
    from pipeline.evaluate import write_reports
    from pipeline.model import load_local, save_local
    from pipeline.records import ID_COLUMN, TARGET
    from pipeline.register import log_and_register
    from pipeline.settings import PipelineSettings
    from pipeline.train import choose_threshold, fit, split_valid

    params = load_params()
    tp = params.train
    start = time.perf_counter()
    valid = split_valid(train, tp.valid_fraction, tp.seed)
    fitted = fit(train, valid, tp, params.features.max_vma)
    threshold = choose_threshold(train.loc[valid, TARGET].to_numpy(), fitted.valid_proba, tp.threshold)
    trees = fitted.best_iteration + 1
    save_local(store / "model", fitted.booster, fitted.spec, {"threshold": threshold, "n_trees": trees})
    fit_predictions = pd.DataFrame(
        {
            ID_COLUMN: np.concatenate([train.loc[~valid, ID_COLUMN], train.loc[valid, ID_COLUMN]]),
            "split": ["train"] * int((~valid).sum()) + ["valid"] * int(valid.sum()),
            TARGET: np.concatenate([train.loc[~valid, TARGET], train.loc[valid, TARGET]]),
            "proba": np.concatenate([fitted.fit_proba, fitted.valid_proba]),
        }
    )
    model = load_local(store / "model")
    from pipeline.register import reference_profile

    model.profile = reference_profile(train, fit_predictions)  # registered with the model, as `register` does
    metrics = write_reports(model, fit_predictions, test, out=store / "reports")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    settings = PipelineSettings(mlflow_tracking_uri=uri, mlflow_artifacts_dir=str(store / "artifacts"))
    # Whatever the gate says, the benchmark needs a champion to load.
    permissive = Params.model_validate(
        {**params.model_dump(by_alias=True), "registry": {"gate": {"min_roc_auc": 0, "min_f1": 0, "min_recall": 0}}}
    )
    outcome = log_and_register(model, permissive, settings, metrics, test, reports=store / "reports")
    return {
        "tracking_uri": uri,
        "version": outcome["version"],
        "trees": trees,
        "max_depth": tp.xgb.max_depth,
        "test_roc_auc": metrics["test"]["roc_auc"],
        "train_and_register_s": time.perf_counter() - start,
    }


def run_job(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """``python -m pipeline.score ARGS`` as a child process: wall time, the child's CPU time and peak RSS.

    CPU time (user + system, every thread, the MLflow lookup process included) does not move
    when another process takes a core for a while, unlike the wall time: it tells a slower run
    from a busier machine. Peak RSS is sampled every 20 ms (``benchmarks.probes.tree_rss``): the rusage
    of a child started with vfork also counts this benchmark's own memory.
    """
    start = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.score", *args, "--n-jobs", str(CORES)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
        peak = 0
        while True:
            peak = max(peak, tree_rss(proc.pid))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            log.seek(0)
            raise RuntimeError(f"pipeline.score failed ({code}): {log.read().strip().splitlines()[-1:]}")
    return {"seconds": seconds, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_bytes": peak}


def process_start(env: dict[str, str]) -> float:
    """Seconds to start Python and import the job's module: the floor of any run."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import pipeline.batch.cli"], cwd=ROOT, env=env, check=True)
    return time.perf_counter() - start


def child_cpu(code: str, env: dict[str, str]) -> float:
    """CPU seconds (user + system, every thread) of ``python -c CODE``, interpreter start included."""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"python -c {code!r} failed")
    return usage.ru_utime + usage.ru_stime


def floor_cpu(env: dict[str, str], parse: Callable[[], object], model: Any, matrix: np.ndarray) -> dict[str, float]:
    """CPU seconds of the work no scoring job of this input can skip, each part timed alone.

    * start: Python, pandas, pyarrow and XGBoost imported (XGBoost imports scikit-learn and SciPy);
    * lookup: the champion alias looked up in MLflow and its files fetched, in a process of its
      own as the job does (MLflow's import is most of it; the job's monitoring run needs it too);
    * parse: ``parse()``, the input read by the library a user would call (one thread);
    * predict: the bare ``inplace_predict`` of the matrix (both threads' CPU);
    * write: the probabilities, with a row number and the 0/1 label, written to Parquet by pyarrow.

    On ``CORES`` cores a job cannot take less than their sum / ``CORES`` seconds, before it
    checks a cell, builds a feature, writes a row or counts drift.
    """
    lookup = (
        "import tempfile, pathlib; from pipeline.resolve import resolve; "
        "resolve('models:/accident-severity@champion', None, pathlib.Path(tempfile.mkdtemp()))"
    )
    quiet = {**env, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    parts = {"start": child_cpu("import pipeline.batch.cli, pipeline.model", env), "lookup": child_cpu(lookup, quiet)}
    start = time.process_time()
    parse()
    parts["parse"] = time.process_time() - start
    start = time.process_time()
    proba = np.asarray(model.booster.inplace_predict(matrix, validate_features=False), dtype=np.float64)
    parts["predict"] = time.process_time() - start
    start = time.process_time()
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        scored = {"row": np.arange(len(proba)), "proba": proba, "label": (proba >= model.threshold).astype(np.int8)}
        pq.write_table(pa.table(scored), Path(tmp) / "scores.parquet")
    parts["write"] = time.process_time() - start
    return parts


def floor_report(parts: dict[str, float], job_cpu_s: float, cores: int = CORES) -> dict[str, Any]:
    """The floor's parts, its seconds on ``cores`` cores, and the CPU the job spends beyond it."""
    cpu = sum(parts.values())
    return {"cpu_s": parts, "seconds": cpu / cores, "job_extra_cpu_s": job_cpu_s - cpu}


def bench_raw(env: dict[str, str], work: Path, model: Any, records: pd.DataFrame) -> dict[str, Any]:
    """The bundled 2021 raw files, best and median of ``RAW_REPEATS`` runs, and their floor."""
    from pipeline.config import BUNDLED_DIR

    folder = BUNDLED_DIR / "2021"
    out = work / "raw" / "2021.parquet"
    runs = [run_job([str(folder), "--output", str(out)], env) for _ in range(RAW_REPEATS)]
    seconds = [r["seconds"] for r in runs]
    summary = json.loads(out.with_name("2021.summary.json").read_text())

    def parse() -> None:  # the four tables, as pandas reads them with no options but the separator
        for table in sorted(folder.glob("*.csv.gz")):
            pd.read_csv(table, sep=";", low_memory=False)

    return {
        "rows": summary["counts"]["input_rows"],
        "best_s": min(seconds),
        "median_s": statistics.median(seconds),
        "peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs),
        "in_job_timings_s": summary["timings_s"],
        "import_floor_s": process_start(env),
        "floor": floor_report(
            floor_cpu(env, parse, model, model.predict_input(records)), statistics.median(r["cpu_s"] for r in runs)
        ),
    }


def write_flat_csv(records: pd.DataFrame, rows: int, path: Path, seed: int = 2021) -> pd.DataFrame:
    """``rows`` records resampled with replacement, renumbered, written as ';' CSV; returns them."""
    from pipeline.records import ID_COLUMN, RECORD_COLUMNS, TARGET

    picked = np.random.default_rng(seed).integers(0, len(records), rows)
    sample = records.iloc[picked].reset_index(drop=True)
    sample[ID_COLUMN] = np.arange(1, rows + 1, dtype=np.int64)
    sample = sample[[ID_COLUMN, *RECORD_COLUMNS, TARGET]]
    table = pa.Table.from_pandas(sample, preserve_index=False)
    pa_csv.write_csv(table, path, write_options=pa_csv.WriteOptions(delimiter=";", quoting_style="needed"))
    return sample


def bench_flat(env: dict[str, str], work: Path, model: Any, records: pd.DataFrame) -> dict[str, Any]:
    """1M resampled records: end to end against a bare ``inplace_predict`` of the same matrix.

    Both are timed ``FLAT_REPEATS`` times, alternately, and compared by their medians: on a
    shared 2-core machine one run of either can be 10 % off.
    """
    path = work / "flat.csv"
    sample = write_flat_csv(records, FLAT_ROWS, path)
    out = work / "flat" / "scores.parquet"
    matrix = model.predict_input(sample)
    jobs: list[dict[str, Any]] = []
    bare: list[float] = []
    for _ in range(FLAT_REPEATS):
        jobs.append(run_job([str(path), "--output", str(out)], env))
        start = time.perf_counter()
        baseline = np.asarray(model.booster.inplace_predict(matrix, validate_features=False), dtype=np.float64)
        bare.append(time.perf_counter() - start)
    # XGBoost is faster on cache-sized slices, as the job predicts them: the stricter baseline.
    start = time.perf_counter()
    for first in range(0, len(matrix), BLOCK_ROWS):
        model.booster.inplace_predict(matrix[first : first + BLOCK_ROWS], validate_features=False)
    bare_blocks = time.perf_counter() - start
    scored = pd.read_parquet(out, columns=["proba"])["proba"].to_numpy()
    summary = json.loads(out.with_name("scores.summary.json").read_text())
    seconds = statistics.median(j["seconds"] for j in jobs)
    bare_median = statistics.median(bare)
    floor = floor_report(
        floor_cpu(env, lambda: pa_csv.read_csv(path, read_options=UNTHREADED, parse_options=SEMICOLON), model, matrix),
        statistics.median(j["cpu_s"] for j in jobs),
    )
    return {
        "rows": FLAT_ROWS,
        "csv_mb": path.stat().st_size / 1e6,
        "runs_s": [round(j["seconds"], 3) for j in jobs],
        "seconds": seconds,
        "rows_per_s": FLAT_ROWS / seconds,
        "cpu_s": statistics.median(j["cpu_s"] for j in jobs),
        "peak_rss_bytes": max(j["peak_rss_bytes"] for j in jobs),
        "bare_inplace_predict_runs_s": [round(b, 3) for b in bare],
        "bare_inplace_predict_s": bare_median,
        "ratio_vs_inplace_predict": seconds / bare_median,
        "ratio_runs": [round(j["seconds"] / b, 3) for j, b in zip(jobs, bare, strict=True)],
        "bare_inplace_predict_blocks_s": bare_blocks,
        "ratio_vs_inplace_predict_blocks": seconds / bare_blocks,
        "identical_to_baseline": bool(np.array_equal(scored, baseline)),
        "floor": {**floor, "ratio": floor["seconds"] / bare_median},
        "in_job_timings_s": summary["timings_s"],
    }


def report(model: dict[str, Any], raw: dict[str, Any], flat: dict[str, Any], cores: list[int]) -> None:
    """Print the numbers, the ratios and the goals."""
    gb = 1024**3

    def mark(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    print(
        f"model: {model['trees']} trees of depth {model['max_depth']} (params.yaml), test ROC-AUC "
        f"{model['test_roc_auc']:.4f}, trained and registered in {model['train_and_register_s']:.1f} s; "
        f"cores {cores}"
    )
    print(
        f"raw 2021 ({raw['rows']:,} accidents): best {raw['best_s']:.2f} s, median {raw['median_s']:.2f} s "
        f"(goal <= {GOALS['raw_s']:.0f} s: {mark(raw['best_s'] <= GOALS['raw_s'])}); python + imports alone "
        f"{raw['import_floor_s']:.2f} s; peak RSS {raw['peak_rss_bytes'] / gb:.2f} GB; "
        f"in job: {raw['in_job_timings_s']}"
    )
    print(
        f"flat {flat['rows']:,} records ({flat['csv_mb']:.0f} MB CSV): median {flat['seconds']:.2f} s of "
        f"{flat['runs_s']} ({flat['cpu_s']:.2f} s CPU), "
        f"{flat['rows_per_s']:,.0f} rows/s (goal >= {GOALS['flat_rows_per_s']:,.0f}: "
        f"{mark(flat['rows_per_s'] >= GOALS['flat_rows_per_s'])}); peak RSS {flat['peak_rss_bytes'] / gb:.2f} GB "
        f"(goal <= {GOALS['flat_peak_rss_gb']} GB: {mark(flat['peak_rss_bytes'] / gb <= GOALS['flat_peak_rss_gb'])})"
    )
    print(
        f"flat vs bare Booster.inplace_predict on the same 1M-row matrix "
        f"(median {flat['bare_inplace_predict_s']:.2f} s "
        f"of {flat['bare_inplace_predict_runs_s']}): ratio of medians {flat['ratio_vs_inplace_predict']:.2f}x, "
        f"run by run {flat['ratio_runs']} (goal <= {GOALS['flat_ratio']:.0f}x: "
        f"{mark(flat['ratio_vs_inplace_predict'] <= GOALS['flat_ratio'])}); probabilities identical to the "
        f"baseline: {flat['identical_to_baseline']}"
    )
    print(
        f"flat vs the same in {BLOCK_ROWS:,}-row slices ({flat['bare_inplace_predict_blocks_s']:.2f} s): ratio "
        f"{flat['ratio_vs_inplace_predict_blocks']:.2f}x; in job: {flat['in_job_timings_s']}"
    )
    print(describe_floor("raw 2021", raw["floor"], raw["best_s"]))
    print(describe_floor("flat", flat["floor"], flat["seconds"]))


def describe_floor(name: str, floor: dict[str, Any], job_s: float) -> str:
    """One line: the floor's parts, its seconds (and ratio to the bare predict), what the job adds."""
    parts = ", ".join(f"{k} {v:.2f}" for k, v in floor["cpu_s"].items())
    ratio = f", {floor['ratio']:.2f}x the bare predict" if "ratio" in floor else ""
    return (
        f"{name} floor: the work no job can skip ({parts} CPU-s) takes {floor['seconds']:.2f} s on {CORES} cores "
        f"at best{ratio}; the job takes {job_s:.2f} s and {floor['job_extra_cpu_s']:.1f} CPU-s more than the floor "
        "(checks, features, outputs, hashing, monitoring, summary, and cores waiting)"
    )


def run() -> dict[str, Any]:
    """Train and register a model, run both benchmarks, print and save the numbers."""
    with pinned_cores() as cores, tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        work = Path(tmp)
        test = bundled_records(2021)
        model = register_model(work / "store", bundled_records(2020), test)
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": model["tracking_uri"],
            "MODEL_NAME": "accident-severity",
            "MODEL_ALIAS": "champion",
            "LOG_LEVEL": "WARNING",
        }
        from pipeline.model import load_model

        loaded = load_model("models:/accident-severity@champion", model["tracking_uri"])
        loaded.booster.set_param({"nthread": CORES})
        raw = bench_raw(env, work, loaded, test)
        flat = bench_flat(env, work, loaded, test)
    report(model, raw, flat, cores)
    results = {"model": model, "raw": raw, "flat": flat, "goals": GOALS, "cores": cores}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    run()
