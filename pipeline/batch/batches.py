"""A scored block of input and its rejects: what the raw and the flat readers both yield."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pipeline.model import LoadedModel

REJECT_COLUMNS: tuple[str, ...] = ("id", "line", "column", "value", "reason")


@dataclass
class Batch:
    """Scored rows and rejects from one block of input."""

    ids: np.ndarray
    proba: np.ndarray
    label: np.ndarray
    outcome: np.ndarray | None  # 0/1 truth, NaN when unknown; None when the input has no outcome
    features: pd.DataFrame | None
    rejects: pd.DataFrame
    input_rows: int
    rejected_rows: int
    file: str  # the file the rejects' lines refer to...
    files: Mapping[str, str] = field(default_factory=dict)  # ...or, by rejected column, when it depends
    timings: dict[str, float] = field(default_factory=dict)
    records: pd.DataFrame | None = None  # the scored (valid) records, for drift counts


def reject_frame(ids: Any, lines: Any, column: Any, value: Any, reason: Any) -> pd.DataFrame:
    """Rejects, one row per bad cell or line: id, 1-based file line, column, value as written, reason."""
    frame = pd.DataFrame(
        {
            "id": pd.Series(ids, dtype="string"),
            "line": pd.Series(lines, dtype="int64"),
            "column": column,
            "value": pd.Series(value, dtype="string"),
            "reason": reason,
        }
    )
    return frame.astype({"column": "string", "reason": "string"})


_EMPTY_REJECTS = reject_frame([], [], [], [], [])  # built once: most blocks have no rejects


def empty_rejects() -> pd.DataFrame:
    """A rejects frame with no rows."""
    return _EMPTY_REJECTS.copy()


def sorted_rejects(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Rejects of several checks in one frame, in file order."""
    parts = [p for p in parts if not p.empty]
    if not parts:
        return empty_rejects()
    frame = pd.concat(parts, ignore_index=True)
    return frame.sort_values(["line", "column"], kind="stable", ignore_index=True)


def score_records(records: pd.DataFrame, model: LoadedModel) -> tuple[np.ndarray, np.ndarray]:
    """Probability and 0/1 label (``proba >= threshold``, as in ``evaluate``) of typed records."""
    proba = model.predict_frame(records) if len(records) else np.array([], dtype=np.float64)
    return proba, (proba >= model.threshold).astype(np.int8)
