"""Monitoring on the real extracts: profile, drift statistics, the run record, and MLflow (SQLite in tmp)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as sk

from pipeline.monitoring import (
    DriftCounts,
    DriftThresholds,
    InputSummary,
    ModelRef,
    Profile,
    build_profile,
    drift_report,
    fingerprint,
    scoring_run,
)
from pipeline.monitoring.drift import chi2_test, psi
from pipeline.monitoring.profile import MISSING, OTHER, categorical_profile, numeric_profile
from pipeline.monitoring.tracking import (
    download_output,
    get_scoring_run,
    list_scoring_runs,
    log_scoring_run,
)
from pipeline.records import RECORD_COLUMNS, TARGET


@pytest.fixture(scope="module")
def profile(trained, records) -> Profile:
    """The profile of the 2020 extract, with the extract model's probabilities."""
    return build_profile(records[2020], trained.model.predict_frame(records[2020]))


def test_profile_covers_every_field_and_round_trips_json(profile: Profile, records) -> None:
    assert list(profile.fields) == list(RECORD_COLUMNS)
    assert profile.rows == len(records[2020])
    for name, fp in profile.fields.items():
        assert sum(fp.counts) == len(records[2020]), name
        assert len(fp.labels()) == len(fp.counts), name
    assert sum(profile.score.counts) == len(records[2020])
    assert Profile.from_json(profile.to_json()) == profile
    # Deciles of the hour: about a tenth of the rows per bucket, none missing.
    heure = profile.fields["heure"]
    assert heure.kind == "numeric"
    assert 6 <= len(heure.counts) - 1 <= 10
    assert heure.counts[-1] == 0


def test_numeric_buckets_collapse_on_repeated_values_and_count_missing() -> None:
    counts = numeric_profile(pd.Series([0, 0, 0, 0, 0, 0, 0, 0, 1, 2, None], dtype="Int16"))
    assert counts.cuts == (0.0, 1.0)
    assert counts.labels() == ["<= 0", "(0, 1]", "> 1", MISSING]
    assert counts.counts == (8, 1, 1, 1)


def test_categories_are_bounded_and_unseen_ones_count_as_other(records) -> None:
    com = records[2020]["com"]
    bounded = categorical_profile(com, max_categories=5, min_share=0.0)
    assert len(bounded.categories) == 5
    assert bounded.labels()[-2:] == [OTHER, MISSING]
    top = com.value_counts().head(5)
    assert dict(zip(bounded.categories, bounded.counts[:5], strict=True)) == top.to_dict()
    unseen = pd.Series(["99999", "99998", None, top.index[0]], dtype="string")
    assert bounded.bucket_counts(unseen).tolist() == [1, 0, 0, 0, 0, 2, 1]
    # Codes stored as numbers and as text are the same category.
    lum = categorical_profile(records[2020]["lum"])
    assert lum.bucket_counts(records[2020]["lum"].astype("string")).tolist() == list(lum.counts)


def test_psi_and_chi2_by_hand() -> None:
    assert psi(np.array([50, 50]), np.array([50, 50])) == 0.0
    expected = 0.4 * np.log(0.9 / 0.5) + 0.4 * np.log(0.5 / 0.1)
    assert psi(np.array([50, 50]), np.array([90, 10])) == pytest.approx(expected)
    # An empty training bucket is rare, not impossible: PSI stays finite.
    assert np.isfinite(psi(np.array([100, 0]), np.array([50, 50])))
    statistic, p_value = chi2_test(np.array([500, 500, 0]), np.array([400, 600, 0]))
    reference = stats.chi2_contingency(np.array([[500, 500], [400, 600]]), correction=False)
    assert (statistic, p_value) == pytest.approx((reference.statistic, reference.pvalue))
    counts = np.array([[310, 120, 40, 9, 1], [280, 150, 30, 25, 5]])
    expected = stats.chi2_contingency(counts, correction=False)
    assert chi2_test(counts[0], counts[1]) == pytest.approx((expected.statistic, expected.pvalue), rel=1e-9)
    assert chi2_test(np.array([10, 0]), np.array([5, 0])) == (0.0, 1.0)


def test_thresholds_are_validated_and_ordered() -> None:
    t = DriftThresholds()
    assert (t.psi_watch, t.psi_alert) == (0.1, 0.2)
    assert [t.status(v) for v in (0.05, 0.1, 0.15, 0.2, 3.0)] == ["ok", "watch", "watch", "alert", "alert"]
    with pytest.raises(ValueError, match="below psi_watch"):
        DriftThresholds(psi_watch=0.3, psi_alert=0.2)


def test_training_data_against_itself_is_ok(profile: Profile, trained, records) -> None:
    report = drift_report(profile, records[2020], trained.model.predict_frame(records[2020]))
    assert report.verdict == "ok"
    assert report.drivers == ()
    assert {d.psi for d in report.fields} == {0.0}
    assert report.score.psi == 0.0


def test_blocks_add_up_to_the_whole(profile: Profile, trained, records) -> None:
    frame = records[2021]
    proba = trained.model.predict_frame(frame)
    whole = drift_report(profile, frame, proba)
    counts = DriftCounts(profile)
    for first in range(0, len(frame), 97):
        counts.add(frame.iloc[first : first + 97], proba[first : first + 97])
    assert counts.report() == whole
    table = whole.table()
    assert len(table) == len(RECORD_COLUMNS) + 1
    assert table["psi"].iloc[:-1].is_monotonic_decreasing


def test_too_few_rows_give_no_verdict(profile: Profile, trained, records) -> None:
    few = records[2021].head(50)
    report = drift_report(profile, few, trained.model.predict_frame(few))
    assert report.verdict == "insufficient"
    assert report.drivers == ()
    assert report.rows == 50


def test_year_field_is_reported_but_ignored_by_default(profile: Profile, trained, records) -> None:
    proba = trained.model.predict_frame(records[2021])
    an = drift_report(profile, records[2021], proba).by_field()["an"]
    assert an.status == "alert"
    assert not an.counted
    counted = drift_report(profile, records[2021], proba, DriftThresholds(ignore=()))
    assert counted.verdict == "alert"
    assert counted.drivers[0] == "an"


def make_run(profile: Profile, trained, frame: pd.DataFrame, source: str = "cli", **kwargs) -> object:
    proba = trained.model.predict_frame(frame)
    files = {"caracteristiques.csv": "ab" * 32}
    return scoring_run(
        started_at=kwargs.pop("started_at", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        source=source,
        model=ModelRef(name="accident-severity", version="1", alias="champion", run_id="r1"),
        input=InputSummary(
            fingerprint=fingerprint(files), files=files, input_rows=len(frame) + 2, scored=len(frame), rejected=2
        ),
        profile=profile,
        records=frame,
        proba=proba,
        threshold=trained.model.threshold,
        outcomes=frame[TARGET].to_numpy() if TARGET in frame else None,
        **kwargs,
    )


def test_run_record_metrics_match_scikit_learn(profile: Profile, trained, records) -> None:
    run = make_run(profile, trained, records[2021])
    proba = trained.model.predict_frame(records[2021])
    y = records[2021][TARGET].to_numpy()
    pred = proba >= trained.model.threshold
    assert run.realized is not None
    assert run.realized.roc_auc == pytest.approx(sk.roc_auc_score(y, proba), abs=1e-6)
    assert run.realized.f1 == pytest.approx(sk.f1_score(y, pred), abs=1e-6)
    assert run.realized.recall == pytest.approx(sk.recall_score(y, pred), abs=1e-6)
    assert run.realized.precision == pytest.approx(sk.precision_score(y, pred), abs=1e-6)
    tn, fp, fn, tp = sk.confusion_matrix(y, pred).ravel()
    assert run.realized.confusion == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    assert sum(run.realized.confusion.values()) == len(records[2021])
    assert sum(run.score.histogram) == len(records[2021])
    assert run.score.share_severe == pytest.approx(np.mean(proba >= trained.model.threshold), abs=1e-6)
    no_outcome = make_run(profile, trained, records[2021].drop(columns=[TARGET]))
    assert no_outcome.realized is None
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"}) != fingerprint({"a": "2", "b": "1"})


def test_log_list_and_read_back_on_sqlite(profile: Profile, trained, records, tmp_path: Path, fresh_store: str) -> None:
    uri = fresh_store
    artifacts = (tmp_path / "artifacts").as_uri()
    assert list_scoring_runs(tracking_uri=uri).runs == ()
    frame = records[2021]
    scored = tmp_path / "out" / "2021.parquet"
    scored.parent.mkdir()
    frame.assign(proba=trained.model.predict_frame(frame)).to_parquet(scored)
    rejects = scored.with_name("2021.rejects.csv")
    rejects.write_text("id,line,column,value,reason\n", encoding="utf-8")
    ids = []
    for hour, source in enumerate(("cli", "dvc", "api")):
        run = make_run(profile, trained, frame, source, started_at=datetime(2026, 1, 2, hour, tzinfo=UTC))
        files = {"scored": scored, "rejects": rejects} if source != "dvc" else {}
        ids.append(log_scoring_run(run, files, tracking_uri=uri, artifact_location=artifacts))
    first = list_scoring_runs(tracking_uri=uri, max_results=2)
    assert [r.run_id for r in first.runs] == ids[::-1][:2]  # newest first
    assert first.next_page_token
    rest = list_scoring_runs(tracking_uri=uri, max_results=2, page_token=first.next_page_token)
    assert [r.run_id for r in rest.runs] == [ids[0]]
    assert rest.next_page_token is None
    newest = first.runs[0]
    assert (newest.source, newest.verdict, newest.model_version) == ("api", run.drift.verdict, "1")
    assert newest.drivers == run.drift.drivers
    assert newest.metrics["rows.scored"] == len(frame)
    assert newest.metrics["realized.f1"] == run.realized.f1
    assert newest.metrics["psi.lum"] == run.drift.by_field()["lum"].psi
    assert [r.run_id for r in list_scoring_runs(tracking_uri=uri, source="dvc").runs] == [ids[1]]
    stored = get_scoring_run(ids[2], tracking_uri=uri)
    assert stored.record == run
    assert stored.outputs == {"scored": "outputs/2021.parquet", "rejects": "outputs/2021.rejects.csv"}
    got = download_output(ids[2], "scored", tmp_path / "download", tracking_uri=uri)
    assert got.read_bytes() == scored.read_bytes()
    table = pd.read_csv(Path(stored.artifact_uri.removeprefix("file://")) / "drift" / "drift.csv")
    assert table.set_index("field")["psi"].to_dict() == pytest.approx(
        {d.field: d.psi for d in (*run.drift.fields, run.drift.score)}
    )
    assert json.loads((Path(stored.artifact_uri.removeprefix("file://")) / "outputs.json").read_text())
    with pytest.raises(KeyError, match="no output 'summary'"):
        download_output(ids[2], "summary", tmp_path / "download", tracking_uri=uri)
    with pytest.raises(ValueError, match="between 1 and"):
        list_scoring_runs(tracking_uri=uri, max_results=0)
