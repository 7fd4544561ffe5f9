"""Drift verdicts on the bundled years: a profile of all 2020 accidents (47,744), scored against
all 2021 accidents (56,518) and against files made by filtering real 2021 rows.

The probabilities come from the extract model (tests/conftest.py); the field verdicts do not
depend on it, the score's does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.config import BUNDLED_DIR
from pipeline.monitoring import DriftReport, Profile, build_profile, drift_report
from pipeline.raw_tables import find_tables, read_year
from pipeline.record_tables import records_from_tables

pytestmark = pytest.mark.slow  # reads ~100,000 real accidents (about 12 s of CPU)

# Fields a filter on light or on place cannot move: the calendar day, the minute, who was involved.
UNRELATED = ("jour", "minute", "nb_femmes", "nb_enfants", "nb_pietons")


@pytest.fixture(scope="module")
def years() -> dict[int, pd.DataFrame]:
    return {year: records_from_tables(read_year(find_tables([BUNDLED_DIR / str(year)]))) for year in (2020, 2021)}


@pytest.fixture(scope="module")
def profile(years: dict[int, pd.DataFrame], trained) -> Profile:
    return build_profile(years[2020], trained.model.predict_frame(years[2020]))


def report_of(profile: Profile, trained, frame: pd.DataFrame) -> DriftReport:
    return drift_report(profile, frame, trained.model.predict_frame(frame))


def statuses(report: DriftReport, status: str) -> set[str]:
    return {d.field for d in report.fields if d.counted and d.status == status}


def test_2021_against_2020(profile: Profile, trained, years: dict[int, pd.DataFrame]) -> None:
    assert (profile.rows, len(years[2021])) == (47_744, 56_518)
    report = report_of(profile, trained, years[2021])
    drift = report.by_field()
    # One field on watch: the collision type's "not recorded" code (-1), 3.2 % of 2020 accidents, 0.04 % in 2021.
    assert report.verdict == "watch"
    assert report.drivers == ("col",)
    assert 0.1 <= drift["col"].psi < 0.2
    assert drift["col"].top_bucket == "-1"
    assert drift["col"].reference_share == pytest.approx(0.032, abs=0.001)
    assert drift["col"].current_share < 0.001
    # Next: the month (2020's spring lockdown), then the road width's missing share.
    assert [d.field for d in report.fields if d.counted][1:3] == ["mois", "larrout"]
    assert 0.05 < drift["mois"].psi < 0.1
    assert drift["mois"].top_bucket == "<= 2"  # January-February: 18.9 % of 2020, 12.6 % of 2021
    assert statuses(report, "alert") == set()
    assert statuses(report, "watch") == {"col"}
    assert drift["proba"].status == "ok"
    # The year itself moves completely, and is reported but not counted.
    assert drift["an"].status == "alert"
    assert not drift["an"].counted
    # With ~50,000 rows a chi-square test calls nearly any shift significant: it does not decide the verdict.
    assert drift["lum"].p_value < 1e-6 and drift["lum"].status == "ok"


def test_night_only_file_alerts_on_light_and_hour(profile: Profile, trained, years: dict[int, pd.DataFrame]) -> None:
    night = years[2021][years[2021]["lum"].isin([3, 4, 5])]  # night: unlit, lights off, lights on
    report = report_of(profile, trained, night)
    drift = report.by_field()
    assert len(night) == 13_462
    assert report.verdict == "alert"
    assert report.drivers == ("lum", "heure")
    assert drift["lum"].psi > 5 and drift["heure"].psi > 2
    assert drift["lum"].top_bucket == "1" and drift["lum"].current_share == 0.0  # no daylight left
    # What goes with the night in real data moves less: autumn-winter months, young people, weather, collisions.
    assert statuses(report, "watch") == {"mois", "age_max", "col", "atm"}
    for name in (*UNRELATED, "dep", "com", "lat", "long", "agg"):
        assert drift[name].status == "ok", name


def test_one_department_alerts_on_place(profile: Profile, trained, years: dict[int, pd.DataFrame]) -> None:
    gironde = years[2021][years[2021]["dep"] == "33"]
    report = report_of(profile, trained, gironde)
    drift = report.by_field()
    assert len(gironde) == 1_401
    assert report.verdict == "alert"
    assert {"dep", "com", "lat", "long"} <= set(report.drivers)
    assert report.drivers[:2] == ("dep", "long")
    assert drift["dep"].top_bucket == "33" and drift["dep"].current_share == 1.0
    # The model leans on the department's severity rate: its scores move too.
    assert drift["proba"].status == "alert"
    # The road network differs from the national mix (Paris dominates it); time and people do not move.
    assert {"catr", "col"} <= statuses(report, "alert")
    for name in (*UNRELATED, "heure", "lum", "mois", "atm", "age_min"):
        assert drift[name].status == "ok", name


def test_statistics_are_stable_under_resampling(profile: Profile, trained, years: dict[int, pd.DataFrame]) -> None:
    """A random half of 2020 is 2020: PSI stays far below the watch level on every field."""
    half = years[2020].sample(frac=0.5, random_state=np.random.default_rng(2020))
    report = report_of(profile, trained, half)
    assert report.verdict == "ok"
    assert max(d.psi for d in report.fields) < 0.01
