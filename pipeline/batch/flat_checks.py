"""One block of a records CSV, typed and checked: cells (``check_records``), ids, outcome, malformed lines."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.batch.batches import empty_rejects, reject_frame, sorted_rejects
from pipeline.batch.inputs import FlatSource
from pipeline.record_checks import check_records
from pipeline.records import FIELDS, ID_COLUMN, RECORD_COLUMNS, TARGET

NUMERIC = frozenset(f.name for f in FIELDS.values() if f.kind in ("int", "float", "code"))
# Ids written as plain integers (no sign, no leading zero, int64) map one to one to their int64 value.
_INTEGER_ID = r"^(0|[1-9][0-9]{0,17})$"


class InvalidRows:
    """Lines pyarrow could not split into the header's number of fields: skipped, then rejected."""

    def __init__(self) -> None:
        self.new: list[tuple[int, str, str]] = []  # line, text, reason: not reported yet
        self._lines: list[int] = []
        self._seen: set[int] = set()  # read_blocks may read a block twice: each line counts once
        self._sorted = np.array([], dtype=np.int64)

    def __call__(self, row: Any) -> str:
        line = int(row.number) if row.number is not None else -1
        if line in self._seen and line >= 0:
            return "skip"
        self._seen.add(line)
        reason = f"expected {row.expected_columns} fields, found {row.actual_columns}"
        self.new.append((line, str(row.text)[:200], reason))
        self._lines.append(line)
        return "skip"

    def lines(self) -> np.ndarray:
        """Sorted lines of every invalid row seen so far."""
        if len(self._sorted) != len(self._lines):
            self._sorted = np.sort(np.array(self._lines, dtype=np.int64))
        return self._sorted

    def take_new(self) -> pd.DataFrame:
        """Rejects for the invalid rows not reported yet (no id: the line could not be split)."""
        if not self.new:  # the usual block: no frame to build
            return empty_rejects()
        new, self.new = self.new, []
        return reject_frame([None] * len(new), [r[0] for r in new], "", [r[1] for r in new], [r[2] for r in new])


def _no_ints() -> np.ndarray:
    return np.array([], dtype=np.int64)


@dataclass
class FlatState:
    """What the blocks of one file share: the rows parsed before, and the ids seen."""

    rows_before: int = 0
    # Integer ids (the usual Num_Acc), sorted, and the line each was first seen on: 16 bytes an id.
    int_ids: np.ndarray = field(default_factory=_no_ints)
    int_lines: np.ndarray = field(default_factory=_no_ints)
    seen: dict[str, int] = field(default_factory=dict)  # any other id -> first line


@dataclass
class CheckedBlock:
    """One block of a records CSV, typed and checked, before scoring."""

    valid: pd.DataFrame  # typed records of the rows that passed every check
    ids: np.ndarray  # of the valid rows
    outcome: np.ndarray | None  # of the valid rows
    rejects: pd.DataFrame
    input_rows: int
    rejected_rows: int
    file: str
    timings: dict[str, float]


def physical_lines(parsed: np.ndarray, skipped: np.ndarray) -> np.ndarray:
    """File line of parsed rows (0-based among the rows pyarrow kept), given the sorted lines it skipped."""
    rank = parsed + 1  # rank among the data lines that were kept
    shift = (skipped - 1) - np.arange(len(skipped))  # data-line numbers of skipped lines, minus earlier skips
    return rank + np.searchsorted(shift, rank, side="right") + 1


def numeric_or_text(values: pa.ChunkedArray) -> np.ndarray | pd.Series:
    """A clean numeric column as float64 (NaN when missing); anything else as text, for check_records.

    check_records parses clean numbers exactly so, only slower; a column holding spaces,
    decimal commas, NaN, infinities or text takes check_records' text path untouched.
    A column the reader already parsed holds only finite numbers and nulls.
    """
    if pa.types.is_float64(values.type):
        return values.to_numpy(zero_copy_only=False)  # nulls -> NaN
    try:
        number = pc.cast(values, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return values.to_pandas()
    array = number.to_numpy(zero_copy_only=False)  # nulls (missing cells) -> NaN
    finite = np.isfinite(array)
    if not finite.all() and np.count_nonzero(~finite) != number.null_count:
        return values.to_pandas()  # "NaN" or "inf" written in the file
    return array


def blank_rows(block: pa.RecordBatch) -> np.ndarray:
    """Rows with every column empty: blank lines, which pyarrow reads as rows of nulls."""
    blank = np.ones(block.num_rows, dtype=bool)
    for column in block.columns:
        if column.null_count == 0:
            return np.zeros(block.num_rows, dtype=bool)
        blank &= column.is_null().to_numpy(zero_copy_only=False)
    return blank


def check_block(
    block: pa.RecordBatch, source: FlatSource, state: FlatState, skipped: np.ndarray, malformed: pd.DataFrame
) -> CheckedBlock:
    """Type and check one block of a records CSV: cells, ids, outcome, malformed lines.

    ``skipped``: the sorted file lines of the malformed rows pyarrow skipped up to the block's
    end (``InvalidRows.lines``); ``malformed``: the rejects of those not reported yet.
    """
    start = time.perf_counter()
    lines = physical_lines(np.arange(state.rows_before, state.rows_before + block.num_rows), skipped)
    state.rows_before += block.num_rows
    keep = ~blank_rows(block)
    if not keep.all():
        block = block.filter(pa.array(keep))
        lines = lines[keep]
    columns = {source.canonical[name]: block.column(name) for name in block.schema.names}
    frame = pd.DataFrame(
        {c: numeric_or_text(columns[c]) if c in NUMERIC else columns[c].to_pandas() for c in RECORD_COLUMNS},
        copy=False,  # no consolidation into one 2-D block: check_records reads column by column
    )
    typed, cells = check_records(frame, first_line=0)
    ids, id_rejects = flat_ids(columns.get(ID_COLUMN), lines, state, source.header_of(ID_COLUMN) or ID_COLUMN)
    outcome, outcome_rejects = flat_outcome(columns.get(TARGET), lines, ids, source.header_of(TARGET) or TARGET)
    bad = np.zeros(len(frame), dtype=bool)
    bad[cells["line"].to_numpy()] = True
    for extra in (id_rejects, outcome_rejects):
        bad[np.searchsorted(lines, extra["line"].to_numpy())] = True
    rejects = sorted_rejects(
        [flat_cell_rejects(cells, columns, ids, lines, source), id_rejects, outcome_rejects, malformed]
    )
    passed = ~bad[typed.index.to_numpy()]
    valid = typed if passed.all() else typed[passed]
    rows = valid.index.to_numpy()
    return CheckedBlock(
        valid=valid,
        ids=ids[rows],
        outcome=outcome[rows] if outcome is not None else None,
        rejects=rejects,
        input_rows=len(frame) + len(malformed),
        rejected_rows=int(bad.sum()) + len(malformed),
        file=source.file.name,
        timings={"check": time.perf_counter() - start},
    )


def flat_cell_rejects(
    cells: pd.DataFrame, columns: Mapping[str, pa.ChunkedArray], ids: np.ndarray, lines: np.ndarray, source: FlatSource
) -> pd.DataFrame:
    """check_records' rejects with the id, the file line, the header name and the cell as written."""
    if cells.empty:
        return empty_rejects()
    pos = cells["line"].to_numpy()
    # Report the text that was read; a number Arrow parsed shows as written when whole ("9", not "9.0").
    value = [_as_written(columns[c][int(p)].as_py()) for c, p in zip(cells["column"], pos, strict=True)]
    header = [source.header_of(c) or c for c in cells["column"]]
    return reject_frame(ids[pos].astype(str), lines[pos], header, value, cells["reason"].to_numpy())


def _as_written(value: Any) -> Any:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else value


def flat_ids(
    values: pa.ChunkedArray | None, lines: np.ndarray, state: FlatState, header: str = ID_COLUMN
) -> tuple[np.ndarray, pd.DataFrame]:
    """A block's ids (``Num_Acc`` as written, else the 1-based row number) and rejects for missing or repeated ones."""
    if values is None:
        return lines - 1, empty_rejects()
    text = pc.fill_null(pc.utf8_trim_whitespace(values), "")
    ids = text.to_numpy(zero_copy_only=False)
    missing = ~pc.greater(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)
    integer = pc.match_substring_regex(text, _INTEGER_ID).to_numpy(zero_copy_only=False)
    first = lines.copy()  # the line each row's id was first seen on
    if integer.any():
        pos = np.flatnonzero(integer)
        first[pos] = _first_lines(pc.cast(pc.filter(text, pa.array(integer)), pa.int64()).to_numpy(), lines[pos], state)
    for i in np.flatnonzero(~integer & ~missing):
        first[i] = state.seen.setdefault(ids[i], int(lines[i]))
    duplicate = first != lines
    rows = np.flatnonzero(missing | duplicate)
    reasons = ["missing id" if missing[i] else f"duplicate id: already on line {first[i]}" for i in rows]
    return ids, reject_frame(ids[rows], lines[rows], header, ids[rows], reasons)


def _first_lines(keys: np.ndarray, lines: np.ndarray, state: FlatState) -> np.ndarray:
    """The line each integer id was first seen on (this block's line if new); records the new ones in ``state``."""
    unique, first_pos, inverse = np.unique(keys, return_index=True, return_inverse=True)
    at = np.searchsorted(state.int_ids, unique)
    known = at < len(state.int_ids)
    known[known] = state.int_ids[at[known]] == unique[known]
    first = lines[first_pos]
    first[known] = state.int_lines[at[known]]
    new = ~known
    state.int_ids = np.insert(state.int_ids, at[new], unique[new])
    state.int_lines = np.insert(state.int_lines, at[new], first[new])
    return first[inverse]


def flat_outcome(
    values: pa.ChunkedArray | None, lines: np.ndarray, ids: np.ndarray, header: str = TARGET
) -> tuple[np.ndarray | None, pd.DataFrame]:
    """The optional truth: 0 or 1, NaN when blank; any other value is rejected."""
    if values is None:
        return None, empty_rejects()
    # Arrow parses numbers as pd.to_numeric does, but fails on spaces, commas or text: those go the slow way.
    with contextlib.suppress(pa.ArrowInvalid):
        number = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
        if not (~values.is_null().to_numpy(zero_copy_only=False) & ~np.isin(number, (0.0, 1.0))).any():
            return number, empty_rejects()
    text = pc.utf8_trim_whitespace(values).to_pandas()
    number = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = text.notna().to_numpy() & ~np.isin(number, (0.0, 1.0))
    rejects = reject_frame(ids[bad].astype(str), lines[bad], header, text[bad].to_numpy(), "outcome must be 0 or 1")
    return number, rejects
