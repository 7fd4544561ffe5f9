"""The three outputs of a run: ``OUT.parquet``, ``OUT.rejects.csv`` and ``OUT.summary.json``.

Each is written to a temporary file beside it; all three are renamed into place together
when the run succeeds (Parquet last), or none is.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.batch.batches import REJECT_COLUMNS, Batch
from pipeline.errors import InputError
from pipeline.records import FIELDS
from pipeline.storage import atomic_paths

if TYPE_CHECKING:
    from pipeline.model import LoadedModel

ROW_GROUP_ROWS = 100_000  # the unit a page of the API reads
MODEL_COLUMNS: tuple[str, ...] = ("model_name", "model_version", "model_alias", "run_id")
OUTPUT_SUFFIXES: tuple[str, ...] = (".rejects.csv", ".summary.json")


def now() -> pd.Timestamp:
    """The run's time stamp (UTC, microseconds)."""
    return pd.Timestamp.now(tz="UTC").floor("us")


def sibling(output: Path, suffix: str) -> Path:
    """``scores.parquet`` -> ``scores.rejects.csv``."""
    return output.with_name(output.name.removesuffix(".parquet") + suffix)


def output_paths(output: Path) -> tuple[Path, Path, Path]:
    """The Parquet file, the rejects CSV and the summary JSON of a run writing ``output``."""
    return output, sibling(output, ".rejects.csv"), sibling(output, ".summary.json")


def output_frame(batch: Batch, model: LoadedModel, scored_at: pd.Timestamp) -> pd.DataFrame:
    """A batch's output rows: id, probability, label, threshold, model identity, time (+ record columns)."""
    index = pd.RangeIndex(len(batch.proba))
    identity = model.describe()
    frame = pd.DataFrame(
        {
            "id": batch.ids,
            "proba": np.asarray(batch.proba, dtype=np.float64),
            "label": np.asarray(batch.label, dtype=np.int8),
            "threshold": np.full(len(index), float(model.threshold)),
            "model_name": pd.Series(identity["name"], index=index, dtype="string"),
            "model_version": pd.Series(identity["version"], index=index, dtype="string"),
            "model_alias": pd.Series(identity["alias"], index=index, dtype="string"),
            "run_id": pd.Series(identity["run_id"], index=index, dtype="string"),
            "scored_at": pd.Series(scored_at, index=index, dtype="datetime64[us, UTC]"),
        },
        index=index,
    )
    if batch.features is not None:
        frame = pd.concat([frame, batch.features.set_axis(index)], axis=1)
    return frame


def output_schema(id_type: pa.DataType, with_features: bool) -> pa.Schema:
    """Arrow schema of the Parquet output."""
    fields = [
        pa.field("id", id_type),
        pa.field("proba", pa.float64()),
        pa.field("label", pa.int8()),
        pa.field("threshold", pa.float64()),
        *(pa.field(c, pa.string()) for c in MODEL_COLUMNS),
        pa.field("scored_at", pa.timestamp("us", tz="UTC")),
    ]
    if with_features:
        kinds = {"int": pa.int32(), "code": pa.int32(), "float": pa.float64()}
        fields += [pa.field(spec.name, kinds.get(spec.kind, pa.string())) for spec in FIELDS.values()]
    return pa.schema(fields)


def check_writable(output: Path) -> None:
    """Refuse an output that is a folder, or exists and is not a regular file (a device, a FIFO...)."""
    for path in output_paths(output):
        try:
            mode = os.stat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue  # the folder is made, or refused, when the outputs are opened
        except OSError as exc:
            raise InputError(f"cannot use output ({exc.strerror})", file=path) from exc
        if stat.S_ISDIR(mode):
            raise InputError("output is a folder: give a file path such as scores.parquet", file=path)
        if not stat.S_ISREG(mode):
            raise InputError("output exists and is not a regular file (a device, FIFO or socket)", file=path)


class OutputFiles:
    """The three outputs, written to temporary files and published together, only on success."""

    def __init__(self, output: Path, *, with_features: bool, id_type: pa.DataType) -> None:
        self.output = Path(output)
        self.schema = output_schema(id_type, with_features)
        self._stack = contextlib.ExitStack()
        self._writer: pq.ParquetWriter | None = None
        self._rejects: IO[str] | None = None
        self._summary: Path | None = None

    def __enter__(self) -> OutputFiles:
        check_writable(self.output)
        parquet, rejects, summary = output_paths(self.output)
        with contextlib.ExitStack() as stack:
            # Renamed in this order: the Parquet file appears only once the others are in place.
            tmp_rejects, self._summary, tmp_parquet = stack.enter_context(atomic_paths(rejects, summary, parquet))
            # Dictionary pages only for the columns that repeat one value: ids and scores are unique.
            constant = ["threshold", *MODEL_COLUMNS, "scored_at"]
            self._writer = stack.enter_context(pq.ParquetWriter(str(tmp_parquet), self.schema, use_dictionary=constant))
            self._rejects = stack.enter_context(tmp_rejects.open("w", encoding="utf-8", newline=""))
            self._rejects.write(",".join(REJECT_COLUMNS) + "\n")
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.__exit__(*exc)

    def write_scored(self, frame: pd.DataFrame) -> None:
        """Append scored rows, in row groups of at most ``ROW_GROUP_ROWS``."""
        assert self._writer is not None
        if len(frame):
            table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
            self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)

    def write_rejects(self, rejects: pd.DataFrame) -> None:
        """Append rejects to the CSV."""
        assert self._rejects is not None
        if len(rejects):
            rejects[list(REJECT_COLUMNS)].to_csv(self._rejects, header=False, index=False)

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """The summary JSON: sorted keys, indented."""
        assert self._summary is not None
        self._summary.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
