"""Batch scoring: upload a file, score it through the API, see the summary, the map and the rejects.

Accepted: a flat CSV of accident records (the columns of ``GET /model``, ``;`` or ``,``;
optional ``Num_Acc`` and ``severe``), or a zip of one year's four raw BAAC tables.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import pandas as pd
import streamlit as st

from api.responses import ModelInfo, ScoreResponse
from app import client, layout
from app.charts import maps
from app.charts.metrics import confusion_heatmap
from app.charts.risk import probability_histogram
from app.charts.style import CHART_CONFIG
from app.client import ApiError
from app.formatting import count, percent

RESULT = "batch_result"
ERROR = "batch_error"
FILE_ID = "batch_file_id"
TABLE_ROWS = 1000
TABLE_COLUMNS = (
    "id",
    "proba",
    "label",
    "an",
    "mois",
    "jour",
    "heure",
    "dep",
    "com",
    "agg",
    "catr",
    "lum",
    "atm",
    "col",
    "nb_vehicules",
    "nb_usagers",
    "nb_pietons",
)


@dataclass(frozen=True)
class BatchResult:
    """One scored upload: the API's answer and every scored row (from its Parquet output)."""

    name: str
    response: ScoreResponse
    parquet: bytes
    scored: pd.DataFrame


def score_upload(name: str, content: bytes) -> BatchResult:
    """Score a file through the API and fetch the full Parquet output; raises ``ApiError``."""
    response = client.score_file(name, content)
    parquet = client.download(response.downloads.parquet)
    try:
        scored = pd.read_parquet(io.BytesIO(parquet))
    except (ValueError, OSError) as exc:
        url = response.downloads.parquet
        raise ApiError(f"the scored rows at {url} are not a readable Parquet file ({exc})", url=url) from exc
    return BatchResult(name, response, parquet, scored)


def handle_upload(name: str, content: bytes) -> None:
    """Score an upload and keep the outcome (result or error) for this session."""
    with st.spinner(f"Scoring {name}…"):
        try:
            st.session_state[RESULT] = score_upload(name, content)
            st.session_state.pop(ERROR, None)
        except ApiError as exc:
            st.session_state[ERROR] = exc
            st.session_state.pop(RESULT, None)


def forget_upload() -> None:
    """The file was removed from the uploader: clear what it produced."""
    for key in (RESULT, ERROR, FILE_ID):
        st.session_state.pop(key, None)


def fetcher(url: str) -> Callable[[], bytes]:
    """Deferred download: fetched from the API only when the button is clicked."""
    return lambda: client.download(url)


def summary_cards(result: BatchResult) -> None:
    """Counts, share predicted severe and mean probability."""
    counts = result.response.summary.get("counts", {})
    rows, scored = int(counts.get("input_rows", 0)), int(counts.get("scored", 0))
    rejected, severe = int(counts.get("rejected", 0)), int(counts.get("predicted_severe", 0))
    mean = result.response.summary.get("scores", {}).get("mean")
    cols = st.columns(5, border=True)
    cols[0].metric("Accidents read", count(rows))
    cols[1].metric("Scored", count(scored))
    cols[2].metric(
        "Rejected",
        count(rejected),
        f"{percent(rejected / rows)} of the rows" if rows else None,
        delta_color="off" if not rejected else "inverse",
        delta_arrow="off",
        help="Rows with a value the codebook or the record schema does not allow (see below).",
    )
    cols[3].metric(
        "Predicted severe",
        count(severe),
        f"{percent(severe / scored)} of the scored" if scored else None,
        delta_color="off",
        delta_arrow="off",
    )
    cols[4].metric("Mean probability", percent(mean) if isinstance(mean, int | float) else "—")


def hover_text(frame: pd.DataFrame) -> pd.Series:
    """One line per accident for the map: id, department, date and probability."""

    def text(column: str, width: int = 0) -> pd.Series:
        if column not in frame.columns:
            return pd.Series("?", index=frame.index)
        values = frame[column].astype("string").fillna("?")
        return values.str.zfill(width) if width else values

    return (
        "Accident "
        + text("id")
        + "<br>Department "
        + text("dep")
        + " · "
        + text("jour", 2)
        + "/"
        + text("mois", 2)
        + "/"
        + text("an")
        + "<br>P(severe) "
        + frame["proba"].map(lambda p: f"{p:.1%}")
    )


def accident_map(result: BatchResult) -> None:
    """The scored accidents of metropolitan France, coloured by probability."""
    threshold = float(result.response.model.threshold)
    if not {"lat", "long"} <= set(result.scored.columns):
        st.info("The scored rows carry no coordinates: nothing to map.", icon=":material/map:")
        return
    where = maps.map_points(result.scored)
    points = where.points.assign(hover=hover_text(where.points))
    config = maps.map_config(str(st.get_option("server.baseUrlPath") or ""))
    st.plotly_chart(maps.accident_map(points, threshold), config=config, key="batch_map")
    notes = [f"{count(len(points))} accidents in metropolitan France"]
    if where.sampled:
        notes[0] += f" (a random sample of the {count(where.total - where.outside - where.missing)} there)"
    if where.outside:
        notes.append(f"{count(where.outside)} overseas or outside the frame, not shown")
    if where.missing:
        notes.append(f"{count(where.missing)} without coordinates")
    st.caption("; ".join(notes) + ".")


def scored_table(result: BatchResult, info: ModelInfo) -> None:
    """The accidents with the highest probability, readable column names."""
    labels = {f.name: f.label_en for f in info.features}
    frame = result.scored[[c for c in TABLE_COLUMNS if c in result.scored.columns]]
    frame = frame.sort_values("proba", ascending=False).head(TABLE_ROWS)
    frame = frame.assign(proba=frame["proba"] * 100)  # shown as a percentage with one decimal
    if "label" in frame.columns:
        frame = frame.assign(label=frame["label"].map({1: "severe", 0: "not severe"}))
    for field in info.features:
        if field.kind == "code" and field.codes and field.name in frame.columns:
            names = {c.code: f"{c.code} – {c.label}" for c in field.codes}
            frame = frame.assign(
                **{field.name: frame[field.name].map(names).fillna(frame[field.name].astype("string"))}
            )
    config: dict[str, Any] = {name: label for name, label in labels.items() if name in frame.columns}
    config["id"] = "Accident"
    config["proba"] = st.column_config.ProgressColumn("P(severe)", format="%.1f%%", min_value=0.0, max_value=100.0)
    config["label"] = "Prediction"
    st.dataframe(frame, hide_index=True, column_config=config, height=380)
    shown = min(len(result.scored), TABLE_ROWS)
    st.caption(
        f"The {count(shown)} accidents with the highest probability, of {count(len(result.scored))} scored; "
        "the downloads hold every row and every field."
    )


def downloads(result: BatchResult) -> None:
    """Parquet (already fetched), CSV and rejected cells (fetched on click)."""
    stem = PurePath(result.name).name.split(".")[0] or "upload"
    links = result.response.downloads
    # (label, data, file suffix, MIME type, widget key); the rejects only when there are some.
    files: list[tuple[str, bytes | Callable[[], bytes], str, str, str]] = [
        ("Download Parquet", result.parquet, "scored.parquet", "application/octet-stream", "batch_dl_parquet"),
        ("Download CSV", fetcher(links.csv), "scored.csv", "text/csv", "batch_dl_csv"),
    ]
    if result.response.rejects_total:
        files.append(
            ("Download rejected cells", fetcher(links.rejects_csv), "rejects.csv", "text/csv", "batch_dl_rejects")
        )
    row = st.container(horizontal=True)
    for label, data, suffix, mime, key in files:
        row.download_button(
            label,
            data=data,
            file_name=f"{stem}-{suffix}",
            mime=mime,
            icon=":material/download:",
            on_click="ignore",
            key=key,
        )


def rejects(result: BatchResult) -> None:
    """Rejected cells with their reasons."""
    response = result.response
    st.subheader("Rejected rows", anchor=False)
    if not response.rejects_total:
        st.success("No row was rejected: every accident in the file was scored.", icon=":material/task_alt:")
        return
    frame = pd.DataFrame(response.rejects)
    order = [c for c in ("line", "id", "column", "value", "reason") if c in frame.columns]
    st.dataframe(
        frame[order],
        hide_index=True,
        column_config={"line": st.column_config.NumberColumn("Line", format="%d"), "id": "Accident"},
    )
    more = response.rejects_total - len(frame)
    st.caption(
        "One row per rejected cell; a rejected row is not scored."
        + (f" The first {count(len(frame))} of {count(response.rejects_total)} are shown." if more > 0 else "")
    )


def outcome(result: BatchResult) -> None:
    """Metrics and confusion matrix when the upload carried the real outcomes."""
    known = result.response.summary.get("outcome")
    if not known:
        return
    metrics, cm = known.get("metrics", {}), known.get("confusion", {})
    st.subheader("Against the known outcomes", anchor=False)
    st.caption(
        f"The file says which accidents were severe ({count(metrics.get('positives'))} of {count(metrics.get('n'))}): "
        "here is how the predictions compare, at the model's threshold."
    )
    shown = [("Precision", "precision"), ("Recall", "recall"), ("F1", "f1"), ("Accuracy", "accuracy")]
    auc = metrics.get("roc_auc")
    cols = st.columns(len(shown) + 1, border=True)
    for col, (name, key) in zip(cols, shown, strict=False):
        value = metrics.get(key)
        col.metric(name, percent(value) if isinstance(value, int | float) else "—")
    cols[-1].metric("ROC-AUC", f"{auc:.3f}" if isinstance(auc, int | float) else "—")
    if {"tn", "fp", "fn", "tp"} <= set(cm):
        tn, fp, fn, tp = (int(cm[k]) for k in ("tn", "fp", "fn", "tp"))
        left, right = st.columns([3, 2], gap="large", vertical_alignment="center")
        with left:
            st.plotly_chart(confusion_heatmap(tn, fp, fn, tp), config=CHART_CONFIG, key="batch_confusion")
        with right:
            st.markdown(
                f"- Of the **{count(tp + fn)}** severe accidents, **{count(tp)}** were flagged and "
                f"**{count(fn)}** missed.\n"
                f"- Of the **{count(tp + fp)}** accidents flagged severe, **{count(tp)}** were "
                f"({percent(tp / (tp + fp)) if tp + fp else '—'}).\n"
                f"- **{count(fp)}** false alarms among the {count(tn + fp)} accidents that were not severe."
            )


def show_result(result: BatchResult, info: ModelInfo) -> None:
    """Everything about one scored upload."""
    st.subheader(f"Results for {result.name}", anchor=False)
    summary_cards(result)
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.markdown("**Where they happened**")
        accident_map(result)
    with right:
        st.markdown("**Distribution of the probabilities**")
        fig = probability_histogram(result.scored["proba"], float(result.response.model.threshold))
        st.plotly_chart(fig, config=CHART_CONFIG, key="batch_histogram")
        model = result.response.model
        st.caption(f"Scored by {model.name} v{model.version} (@{model.alias}); dashed line: the decision threshold.")
    st.markdown("**Scored accidents**")
    scored_table(result, info)
    downloads(result)
    outcome(result)
    rejects(result)


MEGABYTE = 1024 * 1024

status = layout.require_ready(layout.api_status())
info = layout.model_info(status)

st.title("Batch scoring", anchor=False)
st.markdown(
    "Score many accidents at once: a **CSV of accident records** (one per line, the fields of the What-if "
    "form, `;` or `,` separated; add `Num_Acc` to keep your ids and `severe` to compare with the real "
    "outcomes), or a **zip of a year's four raw BAAC tables** (caractéristiques, lieux, véhicules, usagers)."
)
# The API's own limit (API_MAX_UPLOAD_MB), in whole megabytes as the widget takes it.
upload_mb = max(1, info.limits.max_upload_bytes // MEGABYTE)
uploaded = st.file_uploader(
    f"Accident records (.csv) or raw BAAC tables (.zip), up to {upload_mb} MB",
    type=["csv", "zip", "gz", "txt"],
    key="batch_upload",
    max_upload_size=upload_mb,
    help="Scored by the API with the batch job's code; nothing is kept after the session. "
    f"The API refuses files over {upload_mb} MB.",
)
if uploaded is None:
    forget_upload()
elif st.session_state.get(FILE_ID) != uploaded.file_id:
    st.session_state[FILE_ID] = uploaded.file_id
    handle_upload(uploaded.name, uploaded.getvalue())

error: ApiError | None = st.session_state.get(ERROR)
if error is not None:
    layout.show_api_error(error, f"Scoring {uploaded.name if uploaded else 'the file'}")
result: BatchResult | None = st.session_state.get(RESULT)
if result is not None:
    show_result(result, info)
