"""Records -> model matrix: one code path for frames (training, batch) and single records (API)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline import features
from pipeline.feature_spec import FEATURE_COLUMNS, FeatureSpec, fit_spec, out_of_fold_encodings
from pipeline.features import columns_of, columns_of_record, feature_matrix, frame_matrix, record_row
from pipeline.records import ID_COLUMN, RECORD_COLUMNS, TARGET, default_record


@pytest.fixture(scope="module")
def spec(records) -> FeatureSpec:
    rec = records[2020]
    return fit_spec(rec, rec[TARGET].to_numpy(), 130)


def test_matrix_shape_order_and_identifiers_excluded(records, spec) -> None:
    matrix = frame_matrix(records[2021], spec)
    assert matrix.dtype == np.float32
    assert matrix.shape == (len(records[2021]), len(FEATURE_COLUMNS))
    assert spec.columns == FEATURE_COLUMNS
    assert {"an", ID_COLUMN, TARGET, "dep", "com", "jour"}.isdisjoint(FEATURE_COLUMNS)


def as_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as the API hands them over: plain Python values, missing -> None."""
    rows: list[dict[str, Any]] = (
        frame[list(RECORD_COLUMNS)].astype(object).where(frame[list(RECORD_COLUMNS)].notna(), None).to_dict("records")
    )
    return rows


def assert_same_bits(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal float32 rows, NaN included (compared as bytes, not as numbers)."""
    assert actual.dtype == expected.dtype == np.float32
    assert actual.shape == expected.shape
    if actual.tobytes() != expected.tobytes():
        differs = [
            (FEATURE_COLUMNS[j], actual.flat[j], expected.flat[j])
            for j in range(actual.size)
            if actual.flat[j : j + 1].tobytes() != expected.flat[j : j + 1].tobytes()
        ]
        raise AssertionError(f"rows differ: {differs}")


def test_single_record_row_equals_frame_row(records, spec) -> None:
    frame = records[2021].head(25)
    matrix = frame_matrix(frame, spec)
    for i, (_, row) in enumerate(frame[list(RECORD_COLUMNS)].iterrows()):
        record = {k: (None if pd.isna(v) else v) for k, v in row.items()}
        single = feature_matrix(columns_of_record(record), spec)
        np.testing.assert_array_equal(single[0], matrix[i])
        assert_same_bits(record_row(record, spec), matrix[i : i + 1])


def test_record_row_is_the_frame_row_for_every_record(records, spec) -> None:
    # The API's single-record path (Python floats) against the frame path (numpy), bit for bit.
    for year in (2020, 2021):
        frame = records[year]
        matrix = frame_matrix(frame, spec)
        for i, record in enumerate(as_records(frame)):
            assert_same_bits(record_row(record, spec), matrix[i : i + 1])


# larrout 1e300 overflows float32 (to inf) in both paths, and numpy says so.
OVERFLOW_OK = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
EDGE_CASES: list[dict[str, Any]] = [
    {},
    {"lat": None, "long": None, "larrout": None, "age_min": None, "age_max": None, "com": None},
    {"age_min": None, "age_max": 40},
    {"dep": "988", "com": "98899"},  # rare overseas department, commune unseen in training
    {"dep": "unknown", "com": "00000"},  # not a department code at all
    {"dep": "2A", "com": "2A004"},
    {"vma": -1, "agg": 1},
    {"vma": -1, "agg": 2},
    {"vma": 130, "agg": 1},
    {"an": 2020, "mois": 2, "jour": 29},
    {"an": 2024, "mois": 2, "jour": 29},
    {"an": 2100, "mois": 2, "jour": 29},
    {"an": 2000, "mois": 3, "jour": 1},
    {"an": 2021, "mois": 1, "jour": 1},
    {"an": 2021, "mois": 12, "jour": 31},
    {"an": 2021, "mois": 2, "jour": 31},  # not a date: the formula still gives a number
    {"mois": None},  # missing month: Sakamoto's table is read at January
    {"an": None, "jour": None},
    {"mois": 0},
    {"mois": 13},
    {"nb_vehicules": 0, "nb_usagers": 3},
    {"nb_vehicules": 3, "nb_usagers": 7},  # 7 / 3 is not a float32
    {"nb_vehicules": None, "nb_usagers": 2},
    {"lum": 3},
    {"lum": 5, "nb_velo": 1, "nb_pl": 1},
    {"lum": None, "agg": None},
    {"nb_pietons": 2, "nb_tc": 1, "nb_cyclo": 1, "nb_moto": 2},
    {**{name: 1 for name in RECORD_COLUMNS if name.startswith("obs_")}},
    {"lat": 43.123456789, "long": -1.987654321, "larrout": 6.3},
    {"lat": 1e-40, "long": 3.4028235e38, "larrout": 1e300},  # float32 underflow and overflow
    {"heure": 23, "minute": 59, "age_min": 0, "age_max": 120},
]


@OVERFLOW_OK
@pytest.mark.parametrize("changes", EDGE_CASES, ids=range(len(EDGE_CASES)))
def test_record_row_edge_cases(spec, changes: dict[str, Any]) -> None:
    record = {**default_record(), **changes}
    expected = feature_matrix(columns_of_record(record), spec)
    assert_same_bits(record_row(record, spec), expected)
    frame = pd.DataFrame([record], columns=list(RECORD_COLUMNS))
    assert_same_bits(record_row(record, spec), frame_matrix(frame, spec))
    # Missing fields take their defaults in both paths.
    assert_same_bits(record_row(changes, spec), feature_matrix(columns_of_record(changes), spec))


@OVERFLOW_OK
def test_record_row_with_an_empty_spec() -> None:
    # No target rates nor commune counts: every encoding falls back to the prior or 0.
    bare = FeatureSpec(prior=0.25)
    for changes in EDGE_CASES:
        record = {**default_record(), **changes}
        assert_same_bits(record_row(record, bare), feature_matrix(columns_of_record(record), bare))


@OVERFLOW_OK
def test_record_row_subset_of_columns(spec) -> None:
    # A model trained on fewer columns (in another order) gets the same values.
    columns = tuple(reversed(FEATURE_COLUMNS[::3]))
    narrow = FeatureSpec(columns=columns, target_rates=spec.target_rates, prior=spec.prior, com_counts=spec.com_counts)
    for changes in EDGE_CASES:
        record = {**default_record(), **changes}
        row = record_row(record, narrow)
        assert row.shape == (1, len(columns))
        assert_same_bits(row, feature_matrix(columns_of_record(record), narrow))


def test_record_defaults_fill_missing_fields(spec) -> None:
    partial = feature_matrix(columns_of_record({"lum": 3}), spec)
    full = feature_matrix(columns_of_record({**default_record(), "lum": 3}), spec)
    np.testing.assert_array_equal(partial, full)


def test_weekday_and_calendar_features(records, spec) -> None:
    rec = records[2021]
    matrix = frame_matrix(rec, spec)
    expected = pd.to_datetime(
        pd.DataFrame({"year": rec["an"], "month": rec["mois"], "day": rec["jour"]})
    ).dt.weekday.to_numpy()
    np.testing.assert_array_equal(matrix[:, FEATURE_COLUMNS.index("weekday")], expected)
    weekend = matrix[:, FEATURE_COLUMNS.index("weekend")]
    np.testing.assert_array_equal(weekend, (expected >= 5).astype(np.float32))


def test_derived_counts(records, spec) -> None:
    rec = records[2021]
    m = frame_matrix(rec, spec)
    col = FEATURE_COLUMNS.index
    vulnerable = rec[["nb_velo", "nb_edp", "nb_cyclo", "nb_moto", "nb_pietons"]].sum(axis=1)
    np.testing.assert_array_equal(m[:, col("nb_vulnerables")], vulnerable.to_numpy(dtype=np.float32))
    np.testing.assert_array_equal(m[:, col("seul")], (rec["nb_vehicules"] <= 1).to_numpy(dtype=np.float32))


def test_target_encoding_uses_training_rows_and_unknowns_get_the_prior(records, spec) -> None:
    rec = records[2020]
    dep = rec["dep"].iloc[0]
    rows = rec[rec["dep"] == dep]
    n, k = len(rows), rows[TARGET].sum()
    assert spec.target_rates["dep"][dep] == pytest.approx((k + 50 * spec.prior) / (n + 50))
    unknown = feature_matrix(columns_of_record({"dep": "988", "com": "98899"}), spec)
    if "988" not in spec.target_rates["dep"]:
        assert unknown[0, FEATURE_COLUMNS.index("dep_te")] == pytest.approx(spec.prior, rel=1e-6)
    assert unknown[0, FEATURE_COLUMNS.index("com_accidents")] == 0


def test_out_of_fold_encodings_do_not_see_their_own_row(records) -> None:
    rec = records[2020]
    y = rec[TARGET].to_numpy()
    oof = out_of_fold_encodings(rec, y, folds=5, seed=0)
    in_sample = frame_matrix(rec, fit_spec(rec, y, 130))[:, FEATURE_COLUMNS.index("com_te")]
    assert not np.allclose(oof["com"], in_sample)
    # in-sample rates correlate with the label more than out-of-fold ones: that is the leak avoided
    assert np.corrcoef(in_sample, y)[0, 1] > np.corrcoef(oof["com"], y)[0, 1]


def test_spec_round_trip_and_unknown_columns(spec) -> None:
    again = FeatureSpec.from_dict(json.loads(spec.to_json()))
    assert again == FeatureSpec.from_dict(spec.to_dict())
    assert again.columns == spec.columns and again.com_counts == spec.com_counts
    bad = {**spec.to_dict(), "columns": [*spec.columns, "future_feature"]}
    with pytest.raises(ValueError, match="future_feature"):
        FeatureSpec.from_dict(bad)


def test_columns_of_converts_missing_to_nan(records) -> None:
    frame = records[2021].head(100).copy()
    frame["age_min"] = frame["age_min"].astype("Int32")
    frame.loc[frame.index[:3], ["age_min", "lat", "com"]] = pd.NA
    cols = columns_of(frame)
    assert cols["age_min"].dtype == np.float64 and np.isnan(cols["age_min"][:3]).all()
    assert np.isnan(cols["lat"][:3]).all() and not np.isnan(cols["lat"][3:]).any()
    assert cols["com"].null_count == 3 and cols["dep"].null_count == 0
    integers = [c for c in RECORD_COLUMNS if isinstance(frame[c].dtype, np.dtype) and frame[c].dtype.kind == "i"]
    assert integers and all(cols[c].dtype == frame[c].dtype for c in integers)  # cast once, by feature_matrix


def test_integer_columns_give_the_float64_path_values(records, spec) -> None:
    """Integers cast once to float32 equal the old path: every column to float64, then to float32."""
    frame = records[2021]
    as_float = {k: v.astype(np.float64) if isinstance(v, np.ndarray) else v for k, v in columns_of(frame).items()}
    assert np.array_equal(feature_matrix(columns_of(frame), spec), feature_matrix(as_float, spec), equal_nan=True)


def test_lookup_of_a_column_equals_the_dict(records, spec) -> None:
    values = records[2021]["com"]
    expected = np.array([spec.com_counts.get(v, np.nan) if isinstance(v, str) else np.nan for v in values])
    for column in (values.to_numpy(dtype=object), columns_of(records[2021])["com"], values.to_numpy(dtype=object)[:5]):
        got = spec.lookups["com_accidents"].column(column)
        assert np.array_equal(got, expected[: len(got)], equal_nan=True)


def test_build_year_and_main(tables, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(features, "load_interim", lambda year: tables[year])
    monkeypatch.setattr(features, "PROCESSED_DIR", tmp_path)
    features.main()
    out = pd.read_parquet(tmp_path / "accidents_2021.parquet")
    assert len(out) == len(tables[2021]["caracteristiques"])
    assert 0.2 < out[TARGET].mean() < 0.5
