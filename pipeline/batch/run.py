"""The one scoring run, streamed to files: the command line, the DVC stage and the API all call it."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from tqdm import tqdm

from pipeline.batch.batches import Batch
from pipeline.batch.flat import BLOCK_SIZE, flat_batches
from pipeline.batch.inputs import FlatSource, RawSource, Source, resolve_inputs, source_name
from pipeline.batch.limits import DEFAULT_LIMITS, Limits, check_rows
from pipeline.batch.loading import ModelRef, loaded_model
from pipeline.batch.monitor import Monitor
from pipeline.batch.outputs import OutputFiles, now, output_frame, output_paths
from pipeline.batch.raw import raw_batch
from pipeline.batch.stop import check_stop
from pipeline.batch.summary import DEFAULT_MAX_REJECT_RATE, Tally, check_policy, run_summary
from pipeline.errors import InputError
from pipeline.records import ID_COLUMN


def score_to_files(
    paths: Sequence[Path],
    output: Path,
    model: ModelRef,
    *,
    with_features: bool = False,
    max_reject_rate: float = DEFAULT_MAX_REJECT_RATE,
    block_size: int = BLOCK_SIZE,
    limits: Limits = DEFAULT_LIMITS,
    timings: Mapping[str, float] | None = None,
    progress: bool = False,
    monitor: Monitor | None = None,
) -> dict[str, Any]:
    """Score ``paths`` into ``output`` (+ ``.rejects.csv`` and ``.summary.json``), block by block in
    bounded memory; returns the summary.

    Raises ``InputError`` for bad input (``LimitExceeded`` past ``limits``), leaving no output.
    ``model`` may still be loading (a future); ``timings`` (e.g. the model's loading time,
    filled in while this runs) go into the summary; ``progress`` draws a bar on a terminal.
    ``monitor`` counts drift block by block and, once the outputs are published, records the
    run in MLflow (its ``run_id`` is set then; a failed log is only a warning).
    """
    start = time.perf_counter()
    scored_at = now()
    tally = Tally()
    with contextlib.ExitStack() as stack:
        source = resolve_inputs(paths, stack, limits)
        refuse_overwriting_input(output, source)
        flat_ids_given = isinstance(source, FlatSource) and source.header_of(ID_COLUMN) is not None
        out = stack.enter_context(
            OutputFiles(output, with_features=with_features, id_type=pa.string() if flat_ids_given else pa.int64())
        )
        bar = stack.enter_context(
            tqdm(unit=" rows", desc="scoring", disable=not (progress and sys.stderr.isatty()), leave=False)
        )
        for batch in iter_batches(source, model, with_features=with_features, block_size=block_size):
            check_stop()
            tally.add(batch)
            if monitor is not None:
                monitor.add(batch, loaded_model(model))
            check_rows(tally.input_rows, limits, source_name(source))
            write_start = time.perf_counter()
            out.write_scored(output_frame(batch, loaded_model(model), scored_at))
            out.write_rejects(batch.rejects)
            tally.add_time("write", time.perf_counter() - write_start)
            bar.update(batch.input_rows)
        check_policy(tally, max_reject_rate, source)
        tally.timings.update(timings or {})
        summary = run_summary(
            tally, source, loaded_model(model), scored_at, max_reject_rate, time.perf_counter() - start
        )
        out.write_summary(summary)
    if monitor is not None:  # the outputs are in place: record the run with them
        loaded = loaded_model(model)
        if (
            monitor.build(
                summary,
                loaded,
                tally.scores(),
                scored_at.to_pydatetime(),
            )
            is not None
        ):
            parquet, rejects, summary_json = output_paths(output)
            monitor.log({"scored": parquet, "rejects": rejects, "summary": summary_json})
    return summary


def iter_batches(
    source: Source, model: ModelRef, *, with_features: bool = False, block_size: int = BLOCK_SIZE
) -> Iterator[Batch]:
    """Scored batches from either kind of input."""
    if isinstance(source, RawSource):
        yield raw_batch(source, model, with_features=with_features)
    else:
        yield from flat_batches(source, model, with_features=with_features, block_size=block_size)


def refuse_overwriting_input(output: Path, source: Source) -> None:
    """Refuse outputs that are one of the input files (the same file by inode, whatever its path)."""
    files = (source.file,) if isinstance(source, FlatSource) else source.files
    inputs = {_identity(f.path) for f in (*files, *source.archives)}
    for path in output_paths(output):
        with contextlib.suppress(OSError):  # an output that cannot be looked at is no input
            if _identity(path) in inputs:
                raise InputError("output would overwrite an input file: choose another --output", file=path)


def _identity(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino
