"""Pandera schemas and the validate stage, on the real extracts and corrupted copies of them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline import validate
from pipeline.config import ValidateParams
from pipeline.errors import InputError

STRICT = ValidateParams(max_failure_rate=0.0, max_failures=0, examples_per_check=3)
TOLERANT = ValidateParams(max_failure_rate=0.001, max_failures=0, examples_per_check=3)


def _copy(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {name: frame.copy() for name, frame in tables.items()}


def _failed(report: dict) -> set[tuple[str, str, str]]:
    return {(c["table"], c["column"], c["check"]) for c in report["failed"]}


@pytest.mark.parametrize("year", [2020, 2021])
def test_real_extracts_pass(tables: dict[int, dict[str, pd.DataFrame]], year: int) -> None:
    report = validate.validate_year(year, tables[year], STRICT)
    # the extracts include one vma data-entry error on purpose (500 km/h), nothing else
    assert {(c["table"], c["column"]) for c in report["failed"]} <= {("lieux", "vma")}
    assert report["rows"]["caracteristiques"] == report["rows"]["lieux"]


def test_code_not_in_codebook(tables: dict[int, dict[str, pd.DataFrame]]) -> None:
    t = _copy(tables[2021])
    t["caracteristiques"].loc[3, "lum"] = 8
    report = validate.validate_year(2021, t, TOLERANT)
    (check,) = [c for c in report["failed"] if c["column"] == "lum"]
    assert check["failures"] == 1
    assert check["examples"][0]["line"] == 5
    assert check["examples"][0]["value"] == "8"
    assert check["examples"][0]["Num_Acc"] == int(t["caracteristiques"].loc[3, "Num_Acc"])


def test_duplicate_keys(tables: dict[int, dict[str, pd.DataFrame]]) -> None:
    t = _copy(tables[2021])
    t["lieux"] = pd.concat([t["lieux"], t["lieux"].iloc[[0]]], ignore_index=True)
    t["vehicules"] = pd.concat([t["vehicules"], t["vehicules"].iloc[[0]]], ignore_index=True)
    failed = _failed(validate.validate_year(2021, t, STRICT))
    assert any(table == "lieux" and column == "Num_Acc" for table, column, _ in failed)
    assert any(table == "vehicules" for table, _, _ in failed)


def test_user_with_no_vehicle(tables: dict[int, dict[str, pd.DataFrame]]) -> None:
    t = _copy(tables[2021])
    t["usagers"].loc[0, "id_vehicule"] = "999999999"
    report = validate.validate_year(2021, t, STRICT)
    assert any(c["check"] == "vehicle_exists" for c in report["failed"])


def test_accident_missing_from_caracteristiques(tables: dict[int, dict[str, pd.DataFrame]]) -> None:
    t = _copy(tables[2020])
    t["caracteristiques"] = t["caracteristiques"].iloc[1:].reset_index(drop=True)
    failed = _failed(validate.validate_year(2020, t, TOLERANT))
    assert {table for table, column, _ in failed if column == "Num_Acc"} >= {"lieux", "vehicules", "usagers"}


def test_wrong_year_and_bad_time(tables: dict[int, dict[str, pd.DataFrame]]) -> None:
    t = _copy(tables[2021])
    t["caracteristiques"].loc[0, "hrmn"] = "25:61"
    failed = _failed(validate.validate_year(2020, t, STRICT))
    columns = {column for _, column, _ in failed}
    assert {"hrmn", "an", "Num_Acc"} <= columns


def test_main_writes_report_and_fails_over_budget(
    tables: dict[int, dict[str, pd.DataFrame]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = _copy(tables[2021])
    t["vehicules"].loc[:5, "catv"] = 98  # not in the codebook, 6 rows > budget
    monkeypatch.setattr(validate, "load_interim", lambda year: t)
    monkeypatch.setattr(validate, "DATA_REPORTS_DIR", tmp_path)
    with pytest.raises(InputError) as err:
        validate.main()
    report = json.loads((tmp_path / "validation.json").read_text())
    assert report["ok"] is False
    assert "vehicules.catv" in str(err.value)
    assert "98" in str(err.value)
