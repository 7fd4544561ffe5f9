"""The dashboard in process (Streamlit AppTest) against the real API, started as a subprocess.

Every page is run from the entry point (``app/streamlit_app.py``) with ``AppTest.switch_page``,
so the shared frame (page list, API status in the sidebar) is exercised too.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from app import client
from app.charts.maps import map_config
from app.client import ApiError, ApiUnavailable
from app.settings import Settings
from tests.conftest import EXTRACT_2021, MAIN, ROOT, UPLOAD
from tests.servers import api_process, free_port

PAGES = ("overview", "evaluation", "what_if", "batch")


@pytest.fixture(scope="module")
def api_url(registry: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with api_process(registry, tmp_path_factory.mktemp("api") / "api.log") as url:
        yield url


@pytest.fixture
def live(api_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The dashboard points at the running API."""
    monkeypatch.setenv("API_URL", api_url)
    return api_url


@pytest.fixture
def down(monkeypatch: pytest.MonkeyPatch) -> str:
    """The dashboard points at a port where nothing listens."""
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("API_URL", url)
    return url


def open_page(page: str) -> AppTest:
    """Run the entry point, then the page (``overview`` is the default page)."""
    at = AppTest.from_file(str(MAIN), default_timeout=60)
    at.run()
    if page != "overview":
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def plotly_specs(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def trace_types(at: AppTest) -> set[str]:
    return {trace.get("type", "scatter") for spec in plotly_specs(at) for trace in spec["data"]}


# --- client


def test_settings_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("API_URL", raising=False)
    monkeypatch.setenv("APP_PORT", "8600")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.api_url == "http://127.0.0.1:8000"
    assert settings.port == 8600
    assert Settings.model_fields["port"].default == 8501
    monkeypatch.setenv("API_URL", "http://example.invalid:9/")
    assert Settings(_env_file=None).base_url == "http://example.invalid:9"  # type: ignore[call-arg]


@pytest.mark.slow  # the real API in a uvicorn process
def test_client_reads_the_api(live: str, registry: Any) -> None:
    assert client.health().status == "ok"
    assert client.ready().model.version == registry.version
    info = client.model_info()
    assert info.version == registry.version
    assert {f.group for f in info.features} == {"time", "place", "conditions", "vehicles", "people"}
    assert len(client.evaluation().thresholds) == 101
    prediction = client.predict({"agg": 1}, explain=True, top=3)
    assert 0 <= prediction.probability <= 1
    assert prediction.explanation is not None
    assert len(prediction.explanation.factors) == 3
    assert client.predict({}, explain=False).explanation is None


@pytest.mark.slow  # the real API in a uvicorn process
def test_client_errors_are_readable(live: str) -> None:
    with pytest.raises(ApiError) as bad_record:
        client.predict({"agg": 9})
    assert bad_record.value.status == 422
    assert "agg: Input should be 1 or 2" in bad_record.value.message
    assert not isinstance(bad_record.value, ApiUnavailable)
    with pytest.raises(ApiError) as missing:
        client.download("/score/jobs/no-such-job/scored.csv")
    assert missing.value.status == 404
    assert "no scoring job no-such-job" in missing.value.message
    with pytest.raises(ApiError) as bad_file:
        client.score_file("records.csv", b"an;mois\n2021;6\n")
    assert bad_file.value.status == 422
    assert bad_file.value.message.count("records.csv") == 1
    assert "line 1" in bad_file.value.message


def test_client_when_nothing_listens(down: str) -> None:
    with pytest.raises(ApiUnavailable) as exc:
        client.health()
    assert down in exc.value.message
    assert exc.value.status is None


@pytest.mark.slow  # the real API in a uvicorn process
def test_client_rejects_an_unexpected_answer(live: str) -> None:
    # /health answers {"status": "ok"}: not a model card.
    with pytest.raises(ApiError, match="unexpected answer"):
        client._parse(httpx.get(f"{live}/health"), client.ModelInfo)


# --- pages with the API up


@pytest.mark.slow  # the real API in a uvicorn process
def test_overview_shows_model_card_gate_and_seed(live: str, registry: Any) -> None:
    at = open_page("overview")
    shown = metrics(at)
    assert {"Decision threshold", "Training years", "ROC-AUC", "F1", "Recall", "Precision"} <= set(shown)
    info = client.model_info()
    assert shown["Training years"] == "2020"
    assert shown["Test year"] == "2021"
    assert shown["F1"] == f"{info.metrics['test']['f1']:.1%}"
    text = markdown(at)
    assert f"version **{registry.version}**" in text
    assert "@champion" in text
    assert any("random split of 2021" in c.value and "label" in c.value for c in at.caption)
    assert any(live in s.value for s in at.success)
    assert any("API ready" in s.value for s in at.sidebar.success)
    table = at.dataframe[0].value
    assert list(table["Metric"])[:2] == ["ROC-AUC", "PR-AUC"]
    # The gate the model was registered with (the test registry's params), served by the API.
    assert info.gate is not None and info.gate.thresholds is not None
    assert table.loc[table["Metric"] == "F1", "Gate minimum"].item() == f"{info.gate.thresholds['min_f1']:.2f}"
    assert table.loc[table["Metric"] == "F1", "Seed project"].item() == "0.675"
    # Which flavour is registered and how to load it, from the API's model card.
    assert info.loading is not None and info.loading.flavor == "python_function"
    assert [c.value for c in at.code] == [info.loading.python, info.loading.spark, info.loading.serve]
    assert "bar" in trace_types(at)


@pytest.mark.slow  # the real API in a uvicorn process
def test_overview_counts_match_the_data(live: str, records: dict[int, pd.DataFrame], small_params: Any) -> None:
    """Training (the final model's rows), fit, validation and test counts, each labelled, from the extracts."""
    from pipeline.train import split_valid

    at = open_page("overview")
    shown = metrics(at)
    train = records[2020]
    valid = split_valid(train, small_params.train.valid_fraction, small_params.train.seed)
    assert shown["Training accidents"] == f"{len(train):,}"  # refit on every training row
    assert shown["Fit split"] == f"{int((~valid).sum()):,}"
    assert shown["Validation split"] == f"{int(valid.sum()):,}"
    assert shown["Test accidents"] == f"{len(records[2021]):,}"


@pytest.mark.slow  # the real API in a uvicorn process
def test_evaluation_threshold_slider_recomputes_the_metrics(live: str) -> None:
    at = open_page("evaluation")
    ev = client.evaluation()
    slider = at.slider(key="eval_threshold")
    assert slider.value == pytest.approx(round(ev.threshold, 2))
    before = metrics(at)
    assert {"heatmap", "scatter", "bar"} <= trace_types(at)

    slider.set_value(0.8).run()
    assert not at.exception
    after = metrics(at)
    row = next(r for r in ev.thresholds if r.threshold == pytest.approx(0.8))
    assert after["Precision"] == f"{row.precision:.1%}"
    assert after["Recall"] == f"{row.recall:.1%}"
    assert after["F1"] == f"{row.f1:.1%}"
    assert after["Recall"] != before["Recall"]
    heatmap = next(t for spec in plotly_specs(at) for t in spec["data"] if t["type"] == "heatmap")
    assert f"{row.tp:,}" in heatmap["text"][1][1]
    assert any("0.80" in (spec["layout"].get("title") or {}).get("text", "") for spec in plotly_specs(at))


@pytest.mark.slow  # the real API in a uvicorn process
def test_what_if_form_predicts_a_probability(live: str) -> None:
    at = open_page("what_if")
    assert len(at.tabs) == 5
    labels = {s.label for s in at.selectbox}
    assert {"Light", "Weather", "Road category", "Department (INSEE code)"} <= labels
    light = at.selectbox(key="whatif.lum")
    assert light.format_func(1) == "1 – Plein jour (full daylight)"  # "code – French (English)"
    at.button(key="whatif_submit").click().run()
    assert not at.exception
    response = at.session_state["whatif_result"]["response"]
    expected = client.predict(at.session_state["whatif_result"]["record"])
    assert response.probability == pytest.approx(expected.probability)
    assert f"**{response.probability:.1%}**" in markdown(at)
    assert {"indicator", "bar"} <= trace_types(at)


@pytest.mark.slow  # the real API in a uvicorn process
def test_what_if_compares_scenarios(live: str) -> None:
    at = open_page("what_if")
    at.text_input(key="whatif_name").input("Daylight")
    at.button(key="whatif_submit").click().run()
    at.button(key="whatif_add").click().run()
    assert at.button(key="whatif_add").disabled  # this prediction is already kept

    typical = client.model_info().scenario
    assert typical is not None
    at.selectbox(key="whatif.lum").set_value(3)  # night, no street lighting
    assert typical.record["lum"] != 3
    at.number_input(key="whatif.nb_pietons").set_value(int(typical.record["nb_pietons"] or 0) + 1)
    at.text_input(key="whatif_name").input("Night, pedestrian")
    at.button(key="whatif_submit").click().run()
    at.button(key="whatif_add").click().run()
    assert not at.exception
    scenarios = at.session_state["whatif_scenarios"]
    assert [s["name"] for s in scenarios] == ["Daylight", "Night, pedestrian"]
    diff = at.dataframe[0].value
    assert set(diff["Field"]) == {"Light", "Pedestrians"}
    assert diff.loc[diff["Field"] == "Light", "Night, pedestrian"].item().startswith("3 – ")
    bars = [t for spec in plotly_specs(at) for t in spec["data"] if t.get("x") == ["Daylight", "Night, pedestrian"]]
    assert bars

    # Up to five: then the button is disabled.
    for _ in range(3):
        at.button(key="whatif_submit").click().run()
        at.button(key="whatif_add").click().run()
    assert len(at.session_state["whatif_scenarios"]) == 5
    at.button(key="whatif_submit").click().run()
    assert at.button(key="whatif_add").disabled
    names = [s["name"] for s in at.session_state["whatif_scenarios"]]
    assert len(set(names)) == 5  # repeated names are numbered

    at.button(key="whatif_remove_0").click().run()
    assert at.session_state["whatif_scenarios"][0]["name"] == "Night, pedestrian"
    at.button(key="whatif_clear").click().run()
    assert at.session_state["whatif_scenarios"] == []
    at.button(key="whatif_reset").click().run()
    assert at.selectbox(key="whatif.lum").value == typical.record["lum"]
    assert not at.exception


@pytest.mark.slow  # the real API in a uvicorn process
def test_what_if_opens_on_the_typical_accident_of_a_named_place(live: str, records: dict[int, pd.DataFrame]) -> None:
    at = open_page("what_if")
    typical = client.model_info().scenario
    assert typical is not None
    train = records[2020]
    assert typical.com == train["com"].value_counts().idxmax()
    assert typical.accident_id in set(train["Num_Acc"].astype(str))
    assert at.selectbox(key="whatif_place").value == typical.com
    label = at.selectbox(key="whatif_place").format_func(typical.com)
    assert typical.place_name and label.startswith(typical.place_name)
    assert at.text_input(key="whatif.com").value == typical.com
    assert at.selectbox(key="whatif.dep").value == typical.record["dep"]
    assert at.number_input(key="whatif.lat").value == pytest.approx(typical.record["lat"])
    assert any("real accident of the training data" in i.value for i in at.info)
    at.button(key="whatif_submit").click().run()
    sent = at.session_state["whatif_result"]["record"]
    assert sent["com"] == typical.com and sent["lat"] is not None and sent["age_min"] is not None


@pytest.mark.slow  # the real API in a uvicorn process
def test_what_if_picks_lyon_3e_by_name(live: str) -> None:
    at = open_page("what_if")
    at.text_input(key="whatif_place_query").input("lyon 3").run()
    picker = at.selectbox(key="whatif_place")
    assert any(o.startswith("Lyon 3e Arrondissement (69383, dep 69)") for o in picker.options)
    assert picker.options[-1].startswith("Unknown place")
    picker.set_value("69383").run()
    assert not at.exception
    lyon = next(p for p in client.places("69383").places if p.code == "69383")
    assert lyon.name == "Lyon 3e Arrondissement" and lyon.dep == "69"
    assert at.selectbox(key="whatif.dep").value == "69"
    assert at.text_input(key="whatif.com").value == "69383"
    assert at.number_input(key="whatif.lat").value == (pytest.approx(lyon.lat) if lyon.lat is not None else None)
    # "Unknown place" is a choice: it empties the commune and the coordinates.
    at.selectbox(key="whatif_place").set_value("").run()
    assert at.text_input(key="whatif.com").value == ""
    assert at.number_input(key="whatif.lat").value is None


@pytest.mark.slow  # the real API in a uvicorn process
def test_evaluation_shows_calibration_and_slices(live: str) -> None:
    at = open_page("evaluation")
    ev = client.evaluation()
    assert {c.split for c in ev.calibration} == {"valid", "test"}
    test = next(c for c in ev.calibration if c.split == "test")
    shown = metrics(at)
    assert shown["ECE, test"] == f"{test.ece * 100:.1f} pts"
    reliability = next(
        spec for spec in plotly_specs(at) if "Reliability" in (spec["layout"].get("title") or {}).get("text", "")
    )
    assert len(reliability["data"]) == 3  # diagonal, validation, test
    assert ev.slices is not None
    table = next(d.value for d in at.dataframe if "Flag" in d.value.columns)
    assert len(table) == len(ev.slices.slices)
    flagged = [s for s in ev.slices.slices if s.flagged]
    assert (table["Flag"] != "").sum() == len(flagged)
    said = " ".join(w.value for w in at.warning) + " ".join(s.value for s in at.success)
    if flagged:
        assert "far fewer of the severe accidents" in said
    else:
        assert "No slice" in said


def test_the_dashboard_imports_nothing_from_pipeline() -> None:
    """app -> api -> pipeline: no module of app/ imports pipeline (everything comes from the API)."""
    import ast

    offenders = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "pipeline"]
    assert not offenders
    assert not list((ROOT / "app").rglob("params.yaml"))
    assert "params.yaml" not in "".join(p.read_text(encoding="utf-8") for p in (ROOT / "app").rglob("*.py"))


def upload(at: AppTest, name: str, content: bytes, mime: str = "text/csv") -> AppTest:
    at.file_uploader(key="batch_upload").set_value((name, content, mime)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.slow  # the real API in a uvicorn process
def test_batch_uploader_enforces_the_api_limit(live: str) -> None:
    at = open_page("batch")
    limit = client.model_info().limits.max_upload_bytes // (1024 * 1024)
    uploader = at.file_uploader(key="batch_upload")
    assert uploader.proto.max_upload_size_mb == limit
    assert f"up to {limit} MB" in uploader.label
    import tomllib

    config = tomllib.loads((ROOT / "app" / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["server"]["maxUploadSize"] >= limit


@pytest.mark.slow  # the real API in a uvicorn process
def test_batch_scores_a_csv_with_outcomes(live: str) -> None:
    at = open_page("batch")
    upload(at, UPLOAD.name, UPLOAD.read_bytes())
    expected = pd.read_csv(UPLOAD, sep=";")
    shown = metrics(at)
    assert shown["Accidents read"] == f"{len(expected):,}"
    assert shown["Scored"] == f"{len(expected):,}"
    assert shown["Rejected"] == "0"
    result = at.session_state["batch_result"]
    assert len(result.scored) == len(expected)
    assert shown["Predicted severe"] == f"{int(result.scored['label'].sum()):,}"
    assert {"scattergeo", "histogram", "heatmap"} <= trace_types(at)
    geo = next(spec for spec in plotly_specs(at) if spec["data"][0]["type"] == "scattergeo")
    assert geo["layout"]["geo"]["scope"] == "europe"
    assert "mapbox" not in json.dumps(geo) and "map" not in geo["layout"]
    assert "Against the known outcomes" in [s.value for s in at.subheader]
    assert {"Precision", "Recall", "ROC-AUC"} <= set(metrics(at))
    table = at.dataframe[0].value
    assert table["proba"].is_monotonic_decreasing
    assert {d.label for d in at.get("download_button")} == {"Download Parquet", "Download CSV"}
    assert any("No row was rejected" in s.value for s in at.success)
    # The same file again is not scored again; removing it clears the results.
    at.run()
    assert at.session_state["batch_result"] is result
    at.file_uploader(key="batch_upload").set_value(None).run()
    assert "batch_result" not in at.session_state


@pytest.mark.slow  # the real API in a uvicorn process
def test_batch_scores_a_zip_of_raw_tables(live: str, records: dict[int, pd.DataFrame]) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(EXTRACT_2021.glob("*.csv")):
            zf.write(path, path.name)
    at = upload(open_page("batch"), "baac-2021.zip", buffer.getvalue(), "application/zip")
    assert metrics(at)["Accidents read"] == f"{len(records[2021]):,}"
    assert "scattergeo" in trace_types(at)
    captions = " ".join(c.value for c in at.caption)
    assert "accidents in metropolitan France" in captions
    assert "overseas or outside the frame, not shown" in captions  # the extract has overseas accidents


@pytest.mark.slow  # the real API in a uvicorn process
def test_batch_lists_rejected_rows(live: str) -> None:
    # One cell of a real record made invalid, to see the reason reported on the page.
    lines = UPLOAD.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(";")
    cells = lines[2].split(";")
    cells[header.index("lum")] = "9"
    lines[2] = ";".join(cells)
    at = upload(open_page("batch"), "one-bad-cell.csv", ("\n".join(lines) + "\n").encode())
    assert metrics(at)["Rejected"] == "1"
    rejects = at.dataframe[1].value
    assert rejects[["line", "column", "value"]].values.tolist() == [[3, "lum", "9"]]
    assert "code not in the codebook" in rejects["reason"].item()
    assert "Download rejected cells" in {d.label for d in at.get("download_button")}


@pytest.mark.slow  # the real API in a uvicorn process
def test_batch_reports_a_bad_file_plainly(live: str) -> None:
    at = upload(open_page("batch"), "wrong.csv", b"an;mois;jour\n2021;6;15\n")
    assert len(at.error) == 1
    assert "Scoring wrong.csv failed" in at.error[0].value
    assert "422" in at.error[0].value and "nor a records file" in at.error[0].value
    assert "batch_result" not in at.session_state


# --- pages when the API is down or not ready


@pytest.mark.parametrize("page", PAGES)
def test_every_page_says_plainly_when_the_api_is_down(down: str, page: str) -> None:
    at = open_page(page)
    assert not at.exception
    assert len(at.main.error) == 1
    message = at.main.error[0].value
    assert "not reachable" in message and down in message
    assert "make api" in message and "make run" in message
    assert any("API unreachable" in e.value for e in at.sidebar.error)
    assert not at.get("plotly_chart")


@pytest.mark.slow  # the real API in a uvicorn process
def test_pages_say_when_the_api_has_no_model(live: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def not_ready() -> Any:
        raise ApiError("503 Service Unavailable: no model loaded: no champion", url=live, status=503)

    monkeypatch.setattr(client, "ready", not_ready)
    st.cache_data.clear()  # the status probe is cached a few seconds
    at = open_page("what_if")
    assert "up but has no model to serve" in at.error[0].value
    assert "make repro" in at.error[0].value
    assert any("no model loaded" in w.value for w in at.sidebar.warning)


@pytest.mark.slow  # the real API in a uvicorn process
def test_evaluation_without_artifacts_says_so(live: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_evaluation() -> Any:
        raise ApiError("404 Not Found: model version 1 has no evaluation artifacts", url=live, status=404)

    monkeypatch.setattr(client, "evaluation", no_evaluation)
    st.cache_data.clear()  # the evaluation is cached a minute
    at = open_page("evaluation")
    assert "No test-year evaluation for this model" in at.warning[0].value
    assert not at.get("plotly_chart")


@pytest.mark.slow  # the real API in a uvicorn process
def test_a_failing_prediction_is_shown_not_raised(live: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page("what_if")

    def refused(record: Any, explain: bool = True, top: int = 10) -> Any:
        raise ApiUnavailable(f"cannot reach {live}/predict (connection refused)", url=live)

    monkeypatch.setattr(client, "predict", refused)
    at.button(key="whatif_submit").click().run()
    assert not at.exception
    assert "not reachable" in at.error[0].value and "make api" in at.error[0].value
    assert "whatif_result" not in at.session_state


def test_map_outlines_come_from_the_dashboard_itself() -> None:
    assert map_config()["topojsonURL"] == "/app/static/"
    assert map_config("/survey/")["topojsonURL"] == "/survey/app/static/"
    assert (ROOT / "app" / "static" / "europe_50m.json").stat().st_size > 100_000
