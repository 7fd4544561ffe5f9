"""The four raw tables of one year: read whole with ``pipeline.raw_tables`` (one year is small), checked, scored."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from pipeline.batch.batches import Batch, empty_rejects, reject_frame, score_records, sorted_rejects
from pipeline.batch.inputs import InputFile, RawSource
from pipeline.batch.loading import ModelRef, loaded_model
from pipeline.codebook import SCHEMA
from pipeline.errors import InputError
from pipeline.raw_tables import find_tables, read_year
from pipeline.record_checks import check_records
from pipeline.record_tables import records_from_tables
from pipeline.records import FIELDS, ID_COLUMN, RECORD_COLUMNS, TARGET

# Where a record column comes from in the raw tables, to point rejects at the right line.
RAW_SOURCE: Mapping[str, tuple[str, str]] = {
    **{c: ("caracteristiques", c) for c in SCHEMA["caracteristiques"] if c in FIELDS},
    "heure": ("caracteristiques", "hrmn"),
    "minute": ("caracteristiques", "hrmn"),
    **{c: ("lieux", c) for c in SCHEMA["lieux"] if c in FIELDS},
}


def renamed(exc: InputError, files: Sequence[InputFile]) -> InputError:
    """The same error, naming files as the user knows them (zip members, not temporary paths)."""
    where = exc.file
    if where is None:
        return exc
    for f in files:
        where = where.replace(str(f.path), f.name)
    return InputError(exc.reason, file=where, column=exc.column, rows=exc.rows)


def raw_batch(source: RawSource, model: ModelRef, *, with_features: bool = False) -> Batch:
    """Read, check and score the four raw tables of one year."""
    start = time.perf_counter()
    try:
        found = find_tables([f.path for f in source.files])
        tables = read_year(found)
    except InputError as exc:
        raise renamed(exc, source.files) from exc
    names = {f.path: f.name for f in source.files}
    table_file = {table: names[tf.path] for table, tf in found.items()}
    carac = tables["caracteristiques"]
    dup = carac[ID_COLUMN].duplicated(keep=False).to_numpy()
    dup_ids = carac[ID_COLUMN][dup].astype(str).to_numpy()
    dup_rejects = reject_frame(dup_ids, np.flatnonzero(dup) + 2, ID_COLUMN, dup_ids, "duplicate id")
    # A repeated Num_Acc makes every vehicle and person of that id ambiguous: reject all its rows.
    tables["caracteristiques"] = carac[~dup]
    # The feature cap travels with the model: the records are built as they were for training.
    records = records_from_tables(tables, max_vma=loaded_model(model).spec.max_vma)
    read_seconds = time.perf_counter() - start

    start = time.perf_counter()
    typed, cells = check_records(records[list(RECORD_COLUMNS)], first_line=0)
    cell_rejects = raw_cell_rejects(cells, records[ID_COLUMN].to_numpy(), tables)
    # Score the records as records_from_tables built them (as evaluate does), not check_records' copies.
    valid = records.loc[typed.index]
    check_seconds = time.perf_counter() - start

    start = time.perf_counter()
    proba, label = score_records(valid, loaded_model(model))
    predict_seconds = time.perf_counter() - start
    return Batch(
        ids=valid[ID_COLUMN].to_numpy(dtype=np.int64),
        proba=proba,
        label=label,
        outcome=valid[TARGET].to_numpy(dtype=np.float64),
        features=valid[list(RECORD_COLUMNS)].reset_index(drop=True) if with_features else None,
        rejects=sorted_rejects([dup_rejects, cell_rejects]),
        input_rows=len(carac),
        rejected_rows=int(dup.sum()) + len(records) - len(typed),
        file=table_file["caracteristiques"],
        files={raw: table_file[table] for table, raw in RAW_SOURCE.values()},
        timings={"read": read_seconds, "check": check_seconds, "predict": predict_seconds},
        records=valid[list(RECORD_COLUMNS)],
    )


def raw_cell_rejects(cells: pd.DataFrame, ids: np.ndarray, tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """check_records' rejects (positions in the records) -> Num_Acc, and the line and column of the raw table."""
    if cells.empty:
        return empty_rejects()
    acc = ids[cells["line"].to_numpy()]
    line_of = {
        table: pd.Series(np.arange(len(tables[table])) + 2, index=tables[table][ID_COLUMN]).groupby(level=0).first()
        for table in ("caracteristiques", "lieux")
    }
    where = [RAW_SOURCE.get(c, ("caracteristiques", c)) for c in cells["column"]]
    lines = [int(line_of[table].get(a, -1)) for (table, _), a in zip(where, acc, strict=True)]
    columns = [raw for _, raw in where]
    return reject_frame(acc.astype(str), lines, columns, cells["value"].to_numpy(), cells["reason"].to_numpy())
