"""The Monitoring page in process (Streamlit AppTest) against the real API, started as a subprocess.

The API records every file scored through ``POST /score/file`` as a scoring run in MLflow; the page
reads them back through ``GET /score/jobs`` and ``GET /score/jobs/{id}`` only.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from api.job_schemas import JobDetail
from app import client
from tests.conftest import EXTRACT_2021, MAIN, UPLOAD
from tests.servers import api_process, free_port

pytestmark = pytest.mark.slow


EXPERIMENT = "monitoring-page-tests"  # scoring runs of this module only: other modules share the tracking server


@pytest.fixture(scope="module")
def api_url(registry: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MONITOR_EXPERIMENT", EXPERIMENT)  # the API process inherits the environment
        with api_process(registry, tmp_path_factory.mktemp("api") / "api.log") as url:
            yield url


@pytest.fixture
def live(api_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The dashboard points at the running API; nothing cached from an earlier test."""
    monkeypatch.setenv("API_URL", api_url)
    st.cache_data.clear()
    return api_url


def open_monitoring() -> AppTest:
    at = AppTest.from_file(str(MAIN), default_timeout=60)
    at.run()
    at.switch_page("app_pages/monitoring.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def plotly_specs(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def table_with(at: AppTest, column: str) -> pd.DataFrame:
    """The first ``st.dataframe`` with this column (AppTest does not expose a dataframe's key)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def badges(at: AppTest) -> list[str]:
    """The text of every ``st.badge`` (a markdown element whose body is a ``:color-badge[...]``)."""
    return [m.value for m in at.markdown if "-badge[" in m.value]


def raw_zip() -> bytes:
    """The real 2021 extract's four raw tables, zipped as a user would upload them."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(EXTRACT_2021.glob("*.csv")):
            zf.write(path, path.name)
    return buffer.getvalue()


def test_monitoring_says_when_there_are_no_runs(live: str) -> None:
    # Runs first in this module: nothing has been scored into this module's experiment yet.
    assert client.score_jobs(limit=1).jobs == []
    at = open_monitoring()
    assert [t.value for t in at.title] == ["Monitoring"]
    assert any("No scoring runs yet" in i.value for i in at.info)
    assert not at.get("plotly_chart")


@pytest.fixture(scope="module")
def scored(api_url: str) -> list[JobDetail]:
    """Two real files scored through the API: the 2021 CSV extract (with outcomes) and the raw 2021 zip."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("API_URL", api_url)
        client.score_file(UPLOAD.name, UPLOAD.read_bytes())
        client.score_file("baac-2021.zip", raw_zip())
        names = {UPLOAD.name, "baac-2021.zip"}
        runs = [j for j in client.score_jobs(limit=50).jobs if j.input_name in names]
        assert {j.input_name for j in runs} == names
        return [client.score_job(j.id) for j in runs[:2]]


def test_monitoring_shows_the_scored_runs(live: str, scored: list[JobDetail]) -> None:
    at = open_monitoring()
    newest = client.score_jobs(limit=1).jobs[0]
    runs = table_with(at, "Run id")
    for job in scored:
        row = runs.loc[runs["Run id"] == job.id]
        assert len(row) == 1
        assert row["Input"].item() == job.input_name
        assert row["Scored"].item() == job.scored
        assert row["Verdict"].item() == (job.verdict or "none")
        assert row["Predicted severe"].item() == pytest.approx(job.predicted_severe_share)
    csv_run = next(j for j in scored if j.input_name == UPLOAD.name)
    assert csv_run.realized is not None  # the extract carries `severe`
    assert runs.loc[runs["Run id"] == csv_run.id, "F1"].item() == pytest.approx(csv_run.realized.f1)

    # The timeline: scores of every run, realized metrics, the test-year values of the served model.
    timeline = next(s for s in plotly_specs(at) if any(t.get("name") == "Share predicted severe" for t in s["data"]))
    assert len(timeline["data"][0]["x"]) == len(runs)
    f1_trace = next(t for t in timeline["data"] if t.get("name") == "F1")
    assert pytest.approx(csv_run.realized.f1) in f1_trace["y"]
    test_f1 = client.model_info().metrics["test"]["f1"]
    assert any(abs(shape["y0"] - float(test_f1)) < 1e-9 for shape in timeline["layout"]["shapes"])

    # The newest run is chosen first: its verdict badge, its drift table with the API's labels.
    assert at.selectbox(key="monitor_run").value == newest.id
    detail = client.score_job(newest.id)
    assert any(f"Drift: {detail.verdict}" in b for b in badges(at))
    drift = table_with(at, "PSI")
    assert set(drift["Name"]) == {row.field for row in detail.drift}
    assert drift["PSI"].is_monotonic_decreasing
    labels = {f.name: f.label_en for f in client.model_info().features}
    assert drift.loc[drift["Name"] == "lum", "Field"].item() == labels["lum"]

    # The heatmap: fields x runs, PSI written in each cell.
    heatmap = next(t for s in plotly_specs(at) for t in s["data"] if t["type"] == "heatmap")
    assert len(heatmap["x"]) == min(len(runs), 12)
    worst: dict[str, float] = {}
    for job in scored:  # this module's experiment holds these two runs only
        for row in job.drift:
            worst[row.field] = max(worst.get(row.field, 0.0), row.psi)
    assert len(heatmap["y"]) == min(len(worst), 25)  # the fields that moved most
    assert heatmap["y"][0].endswith(f"({max(worst, key=lambda f: worst[f])})")


def test_choosing_a_run_shows_its_drift_badges_and_downloads(live: str, scored: list[JobDetail]) -> None:
    at = open_monitoring()
    csv_run = next(j for j in scored if j.input_name == UPLOAD.name)
    at.selectbox(key="monitor_run").set_value(csv_run.id).run()
    assert not at.exception, [e.value for e in at.exception]
    drift = table_with(at, "PSI")
    expected = pd.DataFrame([r.model_dump() for r in csv_run.drift]).set_index("field")["psi"]
    shown = drift.set_index("Name")["PSI"]
    assert shown.sort_index().to_dict() == pytest.approx(expected.sort_index().to_dict())
    assert any(f"Drift: {csv_run.verdict}" in b for b in badges(at))
    if csv_run.drivers:
        assert any(f"({csv_run.drivers[0]})" in m.value for m in at.markdown)
    shown_metrics = {m.label: m.value for m in at.metric}
    assert shown_metrics["Scored"] == f"{csv_run.scored:,}"
    assert csv_run.realized is not None and csv_run.realized.f1 is not None
    assert shown_metrics["Realized F1"] == f"{csv_run.realized.f1:.3f}"
    assert {d.label for d in at.get("download_button")} >= {
        "Scored rows (Parquet)",
        "Scored rows (CSV)",
        "Summary (JSON)",
    }
    # The links the buttons fetch are the API's, and they answer from the artifact store.
    rows = pd.read_csv(io.BytesIO(client.download(csv_run.downloads.scored_csv)))
    assert len(rows) == csv_run.scored
    assert rows["proba"].between(0, 1).all()


def test_monitoring_says_plainly_when_the_api_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("API_URL", url)
    st.cache_data.clear()
    at = open_monitoring()
    assert len(at.main.error) == 1
    assert "not reachable" in at.main.error[0].value and url in at.main.error[0].value
    assert not at.get("plotly_chart")
