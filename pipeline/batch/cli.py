"""Command line of the batch job: arguments, signals, one-line errors and exit codes."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path

from pipeline.batch.flat import BLOCK_SIZE, MIN_BLOCK_SIZE
from pipeline.batch.loading import ModelUnavailable, start_model_load
from pipeline.batch.monitor import LogTarget, Monitor, artifact_location
from pipeline.batch.run import score_to_files
from pipeline.batch.stop import Stopped, stop_on_signals
from pipeline.batch.summary import DEFAULT_MAX_REJECT_RATE
from pipeline.cli import EXIT_INPUT, EXIT_INTERRUPTED, EXIT_IO, EXIT_MODEL, EXIT_TERMINATED, fail, setup_logging
from pipeline.errors import InputError
from pipeline.monitoring.drift import DriftThresholds
from pipeline.settings import PipelineSettings

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.score",
        description="Score road accidents with the registered severity model. INPUT is the four raw BAAC "
        "tables of one year (a folder, a .zip, or the four files) or one flat CSV of accident records "
        "(the accident record's columns, optional Num_Acc and severe; ';' or ','; UTF-8 or latin-1).",
        epilog="Writes OUT, OUT.rejects.csv and OUT.summary.json, all or nothing. Exit codes: 0 ok; "
        f"{EXIT_INPUT} bad input (one line naming the file, line and column); {EXIT_MODEL} model not found; "
        f"{EXIT_IO} file system error (disk full...); {EXIT_INTERRUPTED} interrupted; {EXIT_TERMINATED} "
        "terminated (SIGTERM).",
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="folder, .zip or CSV files")
    parser.add_argument("-o", "--output", type=Path, required=True, help="Parquet file to write, e.g. scores.parquet")
    parser.add_argument(
        "--model",
        default=None,
        help="alias (@candidate or candidate), version number, models:/ or runs:/ URI, or a local model "
        "folder. Default: models:/$MODEL_NAME@$MODEL_ALIAS (accident-severity@champion) in "
        "$MLFLOW_TRACKING_URI (default sqlite:///mlflow.db)",
    )
    parser.add_argument("--with-features", action="store_true", help="also write the typed record columns")
    parser.add_argument(
        "--max-reject-rate",
        type=_rate,
        default=DEFAULT_MAX_REJECT_RATE,
        help="fail, writing nothing, when a larger share of rows is rejected (default: %(default)s)",
    )
    parser.add_argument("--n-jobs", type=int, default=_cpu_count(), help="prediction threads (default: all cores)")
    parser.add_argument(
        "--block-size", type=_block_size, default=BLOCK_SIZE, help="bytes of flat CSV per block (default: 8 MiB)"
    )
    parser.add_argument(
        "--source",
        choices=("cli", "dvc"),
        default="cli",
        help="what ran the job, as the scoring run records it (default: %(default)s)",
    )
    parser.add_argument(
        "--no-record",
        action="store_true",
        help="do not record the scoring run in MLflow (also MONITOR_RECORD=false)",
    )
    return parser


def monitor_from_settings(source: str, settings: PipelineSettings, input_name: str | None) -> Monitor:
    """The scoring-run recorder of the command line, configured from the environment."""
    return Monitor(
        source="dvc" if source == "dvc" else "cli",
        target=LogTarget(
            settings.mlflow_tracking_uri,
            settings.monitor_experiment,
            artifact_location(settings.mlflow_tracking_uri, settings.mlflow_artifacts_dir),
        ),
        thresholds=DriftThresholds(
            psi_watch=settings.monitor_psi_watch,
            psi_alert=settings.monitor_psi_alert,
            min_rows=settings.monitor_min_rows,
        ),
        background=True,
        timeout_s=settings.monitor_log_timeout_seconds,
        input_name=input_name,
    )


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate between 0 and 1")
    return value


def _block_size(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value < MIN_BLOCK_SIZE:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least {MIN_BLOCK_SIZE} bytes (a few lines)")
    return value


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: score files to Parquet; returns the exit code."""
    args = build_parser().parse_args(argv)
    setup_logging()
    with stop_on_signals():
        try:
            for path in args.inputs:  # the commonest mistake, reported before anything slow starts
                if not path.exists():
                    raise InputError("no such file or folder", file=path)
            timings: dict[str, float] = {}
            with contextlib.ExitStack() as stack:
                # The model loads in the background while the input is read and checked.
                load = start_model_load(args.model, stack, n_jobs=args.n_jobs, timings=timings)
                settings = PipelineSettings()
                monitor = None
                if settings.monitor_record and not args.no_record:
                    name = args.inputs[0].name if len(args.inputs) == 1 else None
                    monitor = monitor_from_settings(args.source, settings, name).start(stack, load.mlflow)
                summary = score_to_files(
                    args.inputs,
                    args.output,
                    load.model,
                    with_features=args.with_features,
                    max_reject_rate=args.max_reject_rate,
                    block_size=args.block_size,
                    timings=timings,
                    progress=True,
                    monitor=monitor,
                )
        except InputError as exc:
            return fail(exc, EXIT_INPUT)
        except ModelUnavailable as exc:
            return fail(exc, EXIT_MODEL)
        except OSError as exc:  # disk full, a file removed or made unreadable mid-run...
            return fail(f"file system error, nothing written: {exc}", EXIT_IO)
        except KeyboardInterrupt:
            return fail("interrupted, nothing written", EXIT_INTERRUPTED)
        except Stopped as stop:
            if stop.signum == signal.SIGTERM:
                return fail("terminated, nothing written", EXIT_TERMINATED)
            return fail("interrupted, nothing written", EXIT_INTERRUPTED)
    counts = summary["counts"]
    log.info(
        "scored %d of %d rows (%d rejected, %d predicted severe) -> %s",
        counts["scored"],
        counts["input_rows"],
        counts["rejected"],
        counts["predicted_severe"],
        args.output,
    )
    return 0
