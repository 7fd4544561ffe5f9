"""The batch job's fast paths give what the plain code gives: Arrow's number cast of raw table
columns (``pd.to_numeric`` otherwise), drift buckets counted by value for integer columns, and
the reader thread that parses the next CSV block ahead."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import raw_tables
from pipeline.batch.flat import read_ahead
from pipeline.errors import InputError
from pipeline.monitoring.profile import CategoricalProfile, NumericProfile, category_counts
from pipeline.raw_tables import to_number, type_column

CELLS = [
    ["1", "02", None, "-3"],
    ["0x10", "1"],  # Arrow's integer cast reads hex, to_numeric does not
    ["+1", "2"],
    ["1.0", "2"],
    ["-0", "1.5"],
    ["-0"],
    ["9223372036854775808"],
    ["1,5"],
    ["inf", "1"],
    ["NaN"],
    ["1e3", "4.35"],
    ["abc", "1"],
    [None, None],
    ["48.8566", "-2.352222", None],
]


def _typed(cells: list[str | None], kind: str) -> pd.Series | str:
    """type_column's column, or its error (an int64 overflow is a TypeError, before and after)."""
    try:
        return type_column(pd.Series(cells, dtype=str), kind, Path("lieux-2021.csv"), "col")
    except (InputError, TypeError) as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize("cells", CELLS, ids=lambda c: "|".join(map(str, c)))
@pytest.mark.parametrize("kind", ["code", "int", "float", "key", "pr"])
def test_typed_column_is_the_to_numeric_one(
    cells: list[str | None], kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    got = _typed(cells, kind)
    monkeypatch.setattr(raw_tables, "to_number", lambda text, kind: pd.to_numeric(text, errors="coerce"))
    expected = _typed(cells, kind)
    if isinstance(expected, str):
        assert got == expected
        return
    assert isinstance(got, pd.Series)
    pd.testing.assert_series_equal(got, expected, check_exact=True)
    if expected.dtype == "float64":  # -0.0 stays -0.0, 0 stays 0
        assert (np.signbit(got.to_numpy()) == np.signbit(expected.to_numpy())).all()


@pytest.mark.parametrize("cells", CELLS, ids=lambda c: "|".join(map(str, c)))
def test_to_number_has_the_to_numeric_values(cells: list[str | None]) -> None:
    text = pd.Series(cells, dtype=str)
    expected = pd.to_numeric(text, errors="coerce").astype("float64")
    for kind in ("int", "float"):
        got = to_number(text, kind).astype("float64").to_numpy()
        np.testing.assert_array_equal(got, expected.to_numpy())
        assert (np.signbit(got) == np.signbit(expected.to_numpy()))[~np.isnan(got)].all()


def test_hex_in_a_raw_column_is_still_not_a_number() -> None:
    with pytest.raises(InputError, match="not a number: '0x10'"):
        type_column(pd.Series(["1", "0x10"], dtype=str), "code", Path("lieux-2021.csv"), "catr")


def _float_counts(profile: NumericProfile, values: pd.Series) -> np.ndarray:
    """The row-by-row way: every value as float64 into its bucket."""
    return profile.bucket_counts(values.astype("Float64").astype("float64"))


@pytest.mark.parametrize(
    "values",
    [
        pd.Series(np.random.default_rng(0).integers(-1, 130, 5000), dtype="int32"),
        pd.Series([5, None, -1, 5, 7], dtype="Int32"),
        pd.Series([None, None], dtype="Int32"),
        pd.Series([], dtype="int32"),
        pd.Series([0, 10**9], dtype="int64"),  # too spread to count by value
    ],
)
@pytest.mark.parametrize("cuts", [(), (0.5, 3.0, 7.0), (-1.0, 0.0, 50.0, 90.0)])
def test_integer_buckets_are_the_float_buckets(values: pd.Series, cuts: tuple[float, ...]) -> None:
    profile = NumericProfile(cuts=cuts, counts=(0,) * (len(cuts) + 2))
    got = profile.bucket_counts(values)
    assert got.dtype == np.int64
    assert got.tolist() == _float_counts(profile, values).tolist()
    assert got.sum() == len(values)


def test_integer_codes_are_counted_as_their_float_values() -> None:
    codes = pd.Series([1, 1, -1, 9, None, 3], dtype="Int16")
    seen, missing = category_counts(codes)
    floats, floats_missing = category_counts(codes.astype("float64"))
    pd.testing.assert_series_equal(seen, floats)
    assert (missing, seen.to_dict()) == (floats_missing, {"-1": 1, "1": 2, "3": 1, "9": 1})
    profile = CategoricalProfile(categories=("1", "9", "4"), counts=())
    assert profile.bucket_counts(codes).tolist() == [2, 1, 0, 2, 1]


def test_read_ahead_keeps_order_and_raises_where_the_items_fail() -> None:
    def items() -> Iterator[int]:
        yield from range(5)
        raise InputError("bad block", file="x.csv")

    got: list[int] = []
    with pytest.raises(InputError, match="bad block"):
        for item in read_ahead(items()):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


def test_read_ahead_stopped_early_closes_its_items() -> None:
    closed: list[bool] = []

    def items() -> Iterator[int]:
        try:
            yield from range(100)
        finally:
            closed.append(True)

    ahead = read_ahead(items())
    assert [next(ahead), next(ahead)] == [0, 1]
    ahead.close()  # waits for the item being read, then closes the source: no "generator already executing"
    assert closed == [True]
