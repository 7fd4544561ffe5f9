"""Records -> model matrix: one code path for frames (training, batch) and single records (API)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline import features
from pipeline.features import (
    FEATURE_COLUMNS,
    FeatureSpec,
    columns_of,
    columns_of_record,
    feature_matrix,
    fit_spec,
    frame_matrix,
    out_of_fold_encodings,
)
from pipeline.records import ID_COLUMN, RECORD_COLUMNS, TARGET, default_record


@pytest.fixture(scope="module")
def spec(records) -> FeatureSpec:
    rec = records[2020]
    return fit_spec(rec, rec[TARGET].to_numpy())


def test_matrix_shape_order_and_identifiers_excluded(records, spec) -> None:
    matrix = frame_matrix(records[2021], spec)
    assert matrix.dtype == np.float32
    assert matrix.shape == (len(records[2021]), len(FEATURE_COLUMNS))
    assert spec.columns == FEATURE_COLUMNS
    assert {"an", ID_COLUMN, TARGET, "dep", "com", "jour"}.isdisjoint(FEATURE_COLUMNS)


def test_single_record_row_equals_frame_row(records, spec) -> None:
    frame = records[2021].head(25)
    matrix = frame_matrix(frame, spec)
    for i, (_, row) in enumerate(frame[list(RECORD_COLUMNS)].iterrows()):
        record = {k: (None if pd.isna(v) else v) for k, v in row.items()}
        single = feature_matrix(columns_of_record(record), spec)
        np.testing.assert_array_equal(single[0], matrix[i])


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
    in_sample = frame_matrix(rec, fit_spec(rec, y))[:, FEATURE_COLUMNS.index("com_te")]
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
    cols = columns_of(records[2021])
    assert cols["lat"].dtype == np.float64
    assert cols["dep"].dtype == object


def test_build_year_and_main(tables, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(features, "load_interim", lambda year: tables[year])
    monkeypatch.setattr(features, "PROCESSED_DIR", tmp_path)
    features.main()
    out = pd.read_parquet(tmp_path / "accidents_2021.parquet")
    assert len(out) == len(tables[2021]["caracteristiques"])
    assert 0.2 < out[TARGET].mean() < 0.5
