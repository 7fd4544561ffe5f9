"""Flat records (CSV upload, batch input) -> typed records + one reject row per bad value."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache, lru_cache
from typing import Any

import numpy as np
import pandas as pd

from pipeline import codebook
from pipeline.records import COM_PATTERN, RECORD_FIELDS


@lru_cache(maxsize=1)
def _allowed_sets() -> dict[str, frozenset[Any]]:
    return {f.name: frozenset(f.allowed()) for f in RECORD_FIELDS if f.kind in ("code", "dep")}


@cache
def _code_table(name: str) -> tuple[int, np.ndarray]:
    """The smallest code of a coded field and a lookup table: ``table[code - smallest]`` is True when allowed."""
    codes = np.array(sorted(int(c) for c in _allowed_sets()[name]), dtype=np.int64)
    table = np.zeros(int(codes[-1] - codes[0]) + 1, dtype=bool)
    table[codes - codes[0]] = True
    return int(codes[0]), table


def _in_codebook(values: np.ndarray, name: str) -> np.ndarray:
    """Which values are allowed codes of a coded field (NaN and fractions are not)."""
    low, table = _code_table(name)
    with np.errstate(invalid="ignore"):
        pos = values - low
        inside = (pos >= 0) & (pos < len(table)) & (pos == np.floor(pos))
    out = np.zeros(len(values), dtype=bool)
    out[inside] = table[pos[inside].astype(np.intp)]
    return out


def _numbers(raw: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A column's cells as float64 (NaN unless a number), which cells are missing, which are not numbers."""
    if pd.api.types.is_numeric_dtype(raw.dtype):
        # Already numbers (the batch job's clean columns, records_from_tables' output): no parsing.
        values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(values)
        return values, missing, np.zeros(len(values), dtype=bool)
    text = raw
    if raw.dtype == object or pd.api.types.is_string_dtype(raw.dtype):
        text = raw.astype("string").str.strip()
        text = text.where(~text.isin(codebook.MISSING_TOKENS)).str.replace(",", ".", regex=False)
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    missing = text.isna().to_numpy()
    return values, missing, np.isnan(values) & ~missing


def _integers(values: np.ndarray, unusable: np.ndarray, optional: bool) -> np.ndarray | pd.arrays.IntegerArray:
    """Whole numbers as int32 (unusable cells already filled with the default), or nullable Int32 (NA) when optional."""
    if not optional:
        return values.astype(np.int32)
    return pd.arrays.IntegerArray(np.where(unusable, 0, values).astype(np.int32), unusable)


def _empty_rejects() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "line": pd.Series(dtype="int64"),
            "column": pd.Series(dtype="string"),
            "value": pd.Series(dtype="string"),
            "reason": pd.Series(dtype="string"),
        }
    )


def check_records(frame: pd.DataFrame, first_line: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Type and check a frame of flat records (string or numeric cells).

    Returns the typed valid rows and a rejects frame (``line``, ``column``, ``value``,
    ``reason``) with one row per bad cell. Missing columns take their documented default,
    except that a column present under no known name is reported by the caller.
    """
    n = len(frame)
    typed: dict[str, Any] = {}
    bad = np.zeros(n, dtype=bool)
    rejects: list[pd.DataFrame] = []
    lines = np.arange(first_line, first_line + n)
    allowed = _allowed_sets()

    def reject(mask: np.ndarray, column: str, values: pd.Series, reason: str) -> None:
        if mask.any():
            rejects.append(
                pd.DataFrame(
                    {
                        "line": lines[mask],
                        "column": column,
                        "value": values[mask].astype("string").to_numpy(),
                        "reason": reason,
                    }
                )
            )

    for spec in RECORD_FIELDS:
        if spec.name not in frame.columns:
            default = pd.Series([spec.default] * n)
            if spec.kind in ("int", "code"):
                default = default.astype("Int32" if spec.optional else "int32")
            elif spec.kind == "float":
                default = default.astype("float64")
            typed[spec.name] = default.array
            continue
        raw = frame[spec.name]
        if spec.kind in ("com", "dep"):
            text = raw.astype("string").str.strip()
            text = text.where(~text.isin(codebook.MISSING_TOKENS))
            if spec.kind == "com":
                com = text.astype("string").str.upper()
                invalid = (~com.str.fullmatch(COM_PATTERN[1:-1]).fillna(True)).to_numpy()
                reject(invalid, spec.name, raw, "not an INSEE commune code (5 characters, e.g. 75056 or 2A004)")
                typed[spec.name] = com.array
            else:
                dep = text.astype("string").str.upper()
                # "1" and "01" are the same department.
                dep = dep.where(~dep.str.fullmatch(r"\d"), "0" + dep)
                invalid = (~dep.isin(allowed[spec.name])).to_numpy() & ~dep.isna().to_numpy()
                reject(invalid, spec.name, raw, "unknown department code")
                typed[spec.name] = dep.fillna(str(spec.default)).array
            bad |= invalid
            continue
        values, missing, not_number = _numbers(raw)
        reject(not_number, spec.name, raw, "not a number")
        ok = ~missing & ~not_number
        invalid = np.zeros(n, dtype=bool)
        if spec.kind != "float":
            frac = ok & ~((np.floor(values) == values) & np.isfinite(values))  # NaN and infinities are no integers
            reject(frac, spec.name, raw, "not an integer")
            invalid |= frac
        if spec.kind == "code":
            unknown = ok & ~_in_codebook(values, spec.name)
            codes = ", ".join(str(c) for c in spec.allowed())
            reject(unknown & ~invalid, spec.name, raw, f"code not in the codebook (allowed: {codes})")
            invalid |= unknown
        else:
            low = spec.minimum if spec.minimum is not None else -np.inf
            high = spec.maximum if spec.maximum is not None else np.inf
            with np.errstate(invalid="ignore"):
                out_of_range = ok & ~((values >= low) & (values <= high))
            reject(out_of_range & ~invalid, spec.name, raw, f"out of range [{spec.minimum}, {spec.maximum}]")
            invalid |= out_of_range
        unusable = missing | not_number | invalid
        # Bad cells are dropped below; fill them so the column can take its integer type.
        # np.where makes a new array: the output never shares (read-only) memory with the input.
        fill = np.nan if spec.optional or spec.default is None else float(spec.default)
        filled = np.where(unusable, fill, values)
        typed[spec.name] = filled if spec.kind == "float" else _integers(filled, unusable, spec.optional)
        bad |= not_number | invalid
    valid_date = _valid_dates(typed)
    date_bad = ~valid_date & ~bad
    if date_bad.any():
        jour = frame["jour"] if "jour" in frame.columns else pd.Series(typed["jour"], index=frame.index)
        reject(date_bad, "jour", jour, "not a valid date")
    bad |= ~valid_date
    rejects_frame = (
        pd.concat(rejects, ignore_index=True).sort_values(["line", "column"], kind="stable")
        if rejects
        else _empty_rejects()
    )
    index = frame.index
    if bad.any():
        keep = ~bad
        typed = {name: column[keep] for name, column in typed.items()}
        index = index[keep]
    # One block per column, as typed: no copy into a consolidated 2-D block.
    out = pd.DataFrame(typed, index=index, copy=False)
    return out, rejects_frame.reset_index(drop=True)


def _valid_dates(columns: Mapping[str, Any]) -> np.ndarray:
    an, mois, jour = (np.asarray(columns[c], dtype=np.float64) for c in ("an", "mois", "jour"))
    leap = ((an % 4 == 0) & (an % 100 != 0)) | (an % 400 == 0)
    days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=float)
    with np.errstate(invalid="ignore"):
        idx = np.clip(np.nan_to_num(mois, nan=1).astype(int) - 1, 0, 11)
        limit = days[idx] + ((idx == 1) & leap)
        return np.asarray((jour >= 1) & (jour <= limit))
