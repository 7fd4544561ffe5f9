"""A flat CSV of accident records, streamed: read block by block with pyarrow, checked, scored.

Memory: the blocks in flight (``READ_AHEAD_BYTES`` of CSV, in blocks of ``block_size``), plus,
per row of the file, its probability and outcome (16 bytes, for the summary) and its id if it
has one (to catch repeated ids: 16 bytes for an integer id, ~100 bytes for any other).
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from pipeline.batch.batches import Batch, score_records
from pipeline.batch.flat_checks import NUMERIC, CheckedBlock, FlatState, InvalidRows, check_block
from pipeline.batch.inputs import FlatSource, is_gzip
from pipeline.batch.loading import ModelRef, loaded_model
from pipeline.batch.stop import check_stop, wait_for
from pipeline.codebook import MISSING_TOKENS
from pipeline.errors import InputError

BLOCK_SIZE = 8 << 20  # bytes of CSV per block: ~40,000 records; larger blocks only cost memory
MIN_BLOCK_SIZE = 4096
READ_AHEAD_BYTES = 256 << 20  # CSV read and checked ahead of scoring: 32 blocks, ~500 MB once typed

Scores = tuple[np.ndarray, np.ndarray, float]  # probabilities, labels, seconds
# A block as read: its rows, seconds, the sorted lines of the malformed rows so far, their new rejects.
ReadBlock = tuple[pa.RecordBatch, float, np.ndarray, pd.DataFrame]
T = TypeVar("T")


def flat_batches(
    source: FlatSource, model: ModelRef, *, with_features: bool = False, block_size: int = BLOCK_SIZE
) -> Iterator[Batch]:
    """Stream a records CSV block by block: type and check, then score."""
    invalid = InvalidRows()
    state = FlatState()
    # Blocks are scored in a worker thread (XGBoost releases the GIL) while the next ones are
    # read and checked here, up to READ_AHEAD_BYTES of CSV ahead: enough to keep reading while
    # the model loads, and a bound on memory.
    ahead = max(2, READ_AHEAD_BYTES // block_size)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="score")
    pending: deque[tuple[CheckedBlock, Future[Scores]]] = deque()
    try:
        # The next block is parsed in a thread (Arrow releases the GIL) while this one is checked.
        for block, read_seconds, skipped, malformed in read_ahead(read_blocks(source, block_size, invalid)):
            check_stop()
            checked = check_block(block, source, state, skipped, malformed)
            checked.timings["read"] = read_seconds
            pending.append((checked, pool.submit(_timed_scores, checked, model)))
            while pending and (len(pending) >= ahead or pending[0][1].done()):
                yield scored_batch(*pending.popleft(), with_features=with_features)
        while pending:
            yield scored_batch(*pending.popleft(), with_features=with_features)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # bad input: what is queued is not scored
    leftover = invalid.take_new()
    if not leftover.empty:
        yield Batch(
            ids=np.array([], dtype=object),
            proba=np.array([], dtype=np.float64),
            label=np.array([], dtype=np.int8),
            outcome=None,
            features=None,
            rejects=leftover,
            input_rows=len(leftover),
            rejected_rows=len(leftover),
            file=source.file.name,
        )


def open_records_csv(
    source: FlatSource, block_size: int, invalid: InvalidRows, *, typed: bool = False
) -> pa_csv.CSVStreamingReader:
    """A streaming reader of the record columns (missing tokens as null): numeric ones parsed
    as float64 when ``typed``, else every column as text."""
    wanted = list(source.canonical)
    number = pa.float64() if typed else pa.string()
    path = str(source.file.path)
    try:
        stream = pa.input_stream(path, compression="gzip" if is_gzip(source.file.path) else None)
        return pa_csv.open_csv(
            stream,
            read_options=pa_csv.ReadOptions(
                use_threads=False,  # so that pyarrow gives the line of each malformed row
                block_size=block_size,
                column_names=list(source.columns),
                skip_rows=1,
                encoding=source.encoding,
            ),
            parse_options=pa_csv.ParseOptions(
                delimiter=source.separator, ignore_empty_lines=False, invalid_row_handler=invalid
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types={c: number if source.canonical[c] in NUMERIC else pa.string() for c in wanted},
                include_columns=wanted,
                null_values=list(MISSING_TOKENS),
                strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot read CSV ({exc})", file=source.file.name, rows=[2]) from exc


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """``items``, each next one made in a thread while the caller works on the current one."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read") as pool:
        # Leaving the block waits for the item being made: ``items`` is never closed while it runs.
        pending = pool.submit(next, items, None)
        while (item := wait_for(pending)) is not None:
            pending = pool.submit(next, items, None)
            yield item


def read_blocks(source: FlatSource, block_size: int, invalid: InvalidRows) -> Iterator[ReadBlock]:
    """The file's blocks, with the seconds each took to read, the sorted file lines of the
    malformed rows skipped so far and the rejects of those not reported before.

    Arrow parses the numeric columns as it reads (a third of the cost of parsing text, then
    numbers). At the first block it cannot parse so, or where a cell was written "NaN" or
    "inf", the file is read again as text from that block on: check_records then tells which
    cells are wrong and why, exactly as for a file read as text throughout.
    """
    typed_blocks = 0
    with contextlib.suppress(InputError):  # the text reader says what is wrong
        for block, seconds in _blocks(open_records_csv(source, block_size, invalid, typed=True), source):
            if not finite_numbers(block):
                break
            typed_blocks += 1
            yield block, seconds, invalid.lines(), invalid.take_new()
        else:
            return
    text = _blocks(open_records_csv(source, block_size, invalid), source)
    for _ in range(typed_blocks):  # the same blocks as the typed reader's: same size, same splits
        next(text, None)
    for block, seconds in text:
        yield block, seconds, invalid.lines(), invalid.take_new()


def _blocks(reader: pa_csv.CSVStreamingReader, source: FlatSource) -> Iterator[tuple[pa.RecordBatch, float]]:
    """A reader's blocks and the seconds each took to read."""
    while True:
        start = time.perf_counter()
        try:
            block = reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read CSV ({exc})", file=source.file.name) from exc
        yield block, time.perf_counter() - start


def finite_numbers(block: pa.RecordBatch) -> bool:
    """Whether every number of a typed block is finite (a cell written "NaN" or "inf" is not)."""
    return all(
        pc.all(pc.is_finite(column), min_count=0).as_py() is not False
        for column in block.columns
        if pa.types.is_float64(column.type)
    )


def _timed_scores(checked: CheckedBlock, model: ModelRef) -> Scores:
    loaded = loaded_model(model)
    start = time.perf_counter()
    proba, label = score_records(checked.valid, loaded)
    return proba, label, time.perf_counter() - start


def scored_batch(checked: CheckedBlock, future: Future[Scores], *, with_features: bool = False) -> Batch:
    """A checked block and its scores, once they are ready."""
    proba, label, seconds = wait_for(future)
    return Batch(
        ids=checked.ids,
        proba=proba,
        label=label,
        outcome=checked.outcome,
        features=checked.valid.reset_index(drop=True) if with_features else None,
        rejects=checked.rejects,
        input_rows=checked.input_rows,
        rejected_rows=checked.rejected_rows,
        file=checked.file,
        timings={**checked.timings, "predict": seconds},
        records=checked.valid,
    )
