"""Request bodies and the error body; the accident record is ``pipeline.records.AccidentRecord`` (not redefined here).

The response bodies are in ``api.responses``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from pipeline.records import AccidentRecord as _Record

if TYPE_CHECKING:
    AccidentRecord = BaseModel
else:
    # Built at import time from RECORD_FIELDS (the one definition); type checkers only know it is a BaseModel.
    AccidentRecord = _Record


def rows_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain Python values (NaN and NA -> None); floats keep every bit, unlike ``to_json``."""
    rows: list[dict[str, Any]] = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    return rows


LabelName = Literal["severe", "not severe"]
Scalar = float | int | str | None


class ErrorDetail(BaseModel):
    """One validation problem, as FastAPI reports it: where (``loc``) and why (``msg``)."""

    loc: list[str | int]
    msg: str
    type: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ErrorResponse(BaseModel):
    """Every error body: a one-line message, or the list of validation problems.

    Bad files also name where the problem is (``file``, ``column``, ``rows``: 1-based
    line numbers, the header being line 1).
    """

    detail: str | list[ErrorDetail]
    file: str | None = None
    column: str | None = None
    rows: list[int] | None = None


# The documented errors (OpenAPI ``responses``) that several routes share.
BAD_BODY: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorResponse,
        "description": "The body could not be parsed at all (e.g. not UTF-8, broken multipart).",
    },
}
NO_MODEL: dict[int | str, dict[str, Any]] = {503: {"model": ErrorResponse, "description": "No model loaded."}}


class BatchRequest(BaseModel):
    """Several accident records (at most ``API_MAX_BATCH``, 1000 by default)."""

    model_config = ConfigDict(extra="forbid")

    records: list[AccidentRecord] = Field(min_length=1)
