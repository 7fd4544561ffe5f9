"""The one error type for bad input: it names the file, the column and the rows."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any


class InputError(ValueError):
    """Bad input data, reported in one line that names where the problem is.

    ``rows`` are 1-based line numbers in the file (the header is line 1).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        column: str | None = None,
        rows: Sequence[int] = (),
    ) -> None:
        self.file = str(file) if file is not None else None
        self.column = column
        self.rows = list(rows)
        self.reason = message
        super().__init__(self._format())

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Pickling (a job worker's error on its way back to the API) rebuilds an exception from
        # its positional arguments only: keep the file, column and rows too.
        return partial(InputError, file=self.file, column=self.column, rows=self.rows), (self.reason,)

    def _format(self) -> str:
        where = []
        if self.file:
            where.append(f"file {self.file}")
        if self.column:
            where.append(f"column {self.column!r}")
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:5])
            more = f" (+{len(self.rows) - 5} more)" if len(self.rows) > 5 else ""
            where.append(f"line{'s' if len(self.rows) > 1 else ''} {shown}{more}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.reason}" if prefix else self.reason
