"""Raw tables -> accident records, the AccidentRecord model, and flat-record checks."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from pipeline.record_checks import check_records
from pipeline.record_tables import records_from_tables
from pipeline.records import FIELDS, ID_COLUMN, RECORD_COLUMNS, TARGET, AccidentRecord, default_record


def test_one_row_per_accident_with_target(tables, records) -> None:
    for year in (2020, 2021):
        rec, t = records[year], tables[year]
        assert rec[ID_COLUMN].is_unique
        assert set(rec[ID_COLUMN]) == set(t["caracteristiques"]["Num_Acc"])
        severe_ids = set(t["usagers"].loc[t["usagers"]["grav"].isin([2, 3]), "Num_Acc"])
        assert set(rec.loc[rec[TARGET] == 1, ID_COLUMN]) == severe_ids
        assert list(rec.columns) == [ID_COLUMN, *RECORD_COLUMNS, TARGET]


def test_counts_match_a_naive_loop(tables, records) -> None:
    """Cross-check the vectorised aggregation against plain Python on every accident."""
    t, rec = tables[2021], records[2021].set_index(ID_COLUMN)
    veh, users = t["vehicules"], t["usagers"]
    for num_acc in rec.index[:80]:
        v = veh[veh["Num_Acc"] == num_acc]
        u = users[users["Num_Acc"] == num_acc]
        row = rec.loc[num_acc]
        assert row["nb_vehicules"] == len(v)
        assert row["nb_usagers"] == len(u)
        assert row["nb_pietons"] == sum(c == 3 for c in u["catu"])
        assert row["nb_moto"] == sum(c in (31, 32, 33, 34, 42, 43) for c in v["catv"])
        assert row["obs_arbre"] == sum(c == 2 for c in v["obs"])
        secu = zip(u["secu1"], u["secu2"], u["secu3"], strict=True)
        assert row["nb_casque"] == sum(2 in triple for triple in secu)
        ages = [2021 - y for y in u["an_nais"].dropna()]
        if ages:
            assert row["age_min"] == min(ages) and row["age_max"] == max(ages)


def test_nothing_but_the_target_comes_from_grav(tables) -> None:
    t = {name: frame.copy() for name, frame in tables[2020].items()}
    before = records_from_tables(t)
    t["usagers"]["grav"] = 1
    after = records_from_tables(t)
    pd.testing.assert_frame_equal(before.drop(columns=TARGET), after.drop(columns=TARGET))
    assert after[TARGET].sum() == 0


def test_cleaning_of_known_anomalies(tables) -> None:
    t = {name: frame.copy() for name, frame in tables[2021].items()}
    t["lieux"].loc[0, "vma"] = 900
    t["caracteristiques"].loc[1, ["lat", "long"]] = 0.0
    rec = records_from_tables(t).set_index(ID_COLUMN)
    assert rec.loc[t["lieux"].loc[0, "Num_Acc"], "vma"] == -1
    assert np.isnan(rec.loc[t["caracteristiques"].loc[1, "Num_Acc"], "lat"])


def test_accident_record_defaults_and_validation() -> None:
    record = AccidentRecord()
    assert record.model_dump() == default_record()
    assert AccidentRecord(lum=3, dep="2A", com="2A004", vma=90).lum == 3
    with pytest.raises(ValidationError) as err:
        AccidentRecord(lum=8)
    assert "lum" in str(err.value) and "5" in str(err.value)
    with pytest.raises(ValidationError, match="extra"):
        AccidentRecord(speed=50)
    with pytest.raises(ValidationError, match="vma"):
        AccidentRecord(vma=300)
    with pytest.raises(ValidationError, match="com"):
        AccidentRecord(com="Paris")


def test_field_specs_carry_codebook_labels() -> None:
    assert FIELDS["lum"].labels()["1"].startswith("Plein jour")
    assert FIELDS["dep"].allowed()[:2] == ("01", "02")
    assert FIELDS["nb_pietons"].labels() == {}


def _flat(records: pd.DataFrame, sep: str = ";") -> pd.DataFrame:
    """Records written as a flat CSV and read back as strings, as the batch job receives them."""
    text = records.to_csv(sep=sep, index=False)
    return pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)


def test_flat_round_trip_is_lossless(records) -> None:
    rec = records[2021]
    typed, rejects = check_records(_flat(rec))
    assert rejects.empty
    for column in RECORD_COLUMNS:
        left = rec[column].to_numpy(dtype=object if column in ("dep", "com") else float, na_value=np.nan)
        right = typed[column].to_numpy(dtype=object if column in ("dep", "com") else float, na_value=np.nan)
        if column in ("dep", "com"):
            assert [str(a) for a in left] == [str(b) for b in right], column
        else:
            np.testing.assert_allclose(left, right, equal_nan=True, err_msg=column)


def test_flat_rejects_name_line_column_and_reason(records) -> None:
    flat = _flat(records[2021].head(10))
    flat.loc[0, "lum"] = "8"
    flat.loc[1, "vma"] = "fast"
    flat.loc[2, "dep"] = "99"
    flat.loc[3, "jour"] = "31"
    flat.loc[3, "mois"] = "2"
    flat.loc[4, "nbv"] = "2.5"
    flat.loc[5, "com"] = "PARIS"
    flat.loc[6, "age_min"] = "130"
    typed, rejects = check_records(flat)
    assert len(typed) == 3
    got = {(r.line, r.column): r.reason for r in rejects.itertuples()}
    assert got[(2, "lum")].startswith("code not in the codebook")
    assert got[(3, "vma")] == "not a number"
    assert got[(4, "dep")] == "unknown department code"
    assert got[(5, "jour")] == "not a valid date"
    assert got[(6, "nbv")] == "not an integer"
    assert "INSEE" in got[(7, "com")]
    assert got[(8, "age_min")].startswith("out of range")


def test_missing_flat_columns_take_defaults() -> None:
    typed, rejects = check_records(pd.DataFrame({"lum": ["3", ""], "dep": ["1", "2b"]}))
    assert rejects.empty
    assert list(typed["lum"]) == [3, FIELDS["lum"].default]
    assert list(typed["dep"]) == ["01", "2B"]
    assert typed["vma"].tolist() == [FIELDS["vma"].default] * 2


def test_numeric_cells_are_checked_like_text(records) -> None:
    """Numbers already parsed (the batch job's clean columns) give the rows and rejects their text gives."""
    flat = _flat(records[2021].head(200))
    numeric = flat.copy()
    for column in RECORD_COLUMNS:
        if FIELDS[column].kind in ("int", "code", "float"):
            numeric[column] = pd.to_numeric(flat[column].replace("", np.nan)).astype("float64")
    cases = {
        "lum": [8.0, np.nan, 2.5, np.inf],
        "vma": [300.0, -np.inf, 50.5, 90.0],
        "lat": [95.0, np.nan, -np.inf, 1.5],
    }
    for column, values in cases.items():
        numeric.loc[: len(values) - 1, column] = values
        flat.loc[: len(values) - 1, column] = [str(v) for v in values]
    text_typed, text_rejects = check_records(flat)
    typed, rejects = check_records(numeric)
    pd.testing.assert_frame_equal(typed, text_typed)
    assert rejects[["line", "column", "reason"]].equals(text_rejects[["line", "column", "reason"]])
    got = {(r.line, r.column): r.reason for r in rejects.itertuples()}
    assert got[(2, "lum")].startswith("code not in the codebook")
    assert got[(4, "lum")] == "not an integer" and got[(5, "lum")] == "not an integer"  # 2.5, inf
    assert got[(4, "lat")].startswith("out of range") and (3, "lat") not in got  # NaN: unknown, allowed
    assert got[(2, "vma")].startswith("out of range") and got[(3, "vma")] == "not an integer"  # 300, -inf
    assert typed["age_min"].dtype == "Int32" and typed["vma"].dtype == "int32"


def test_typed_records_are_writable_copies() -> None:
    frame = pd.DataFrame({"lat": np.array([48.8, np.nan]), "lum": np.array([1.0, 3.0])})
    typed, _ = check_records(frame)
    typed.loc[0, "lat"] = 0.0
    assert frame.loc[0, "lat"] == 48.8
