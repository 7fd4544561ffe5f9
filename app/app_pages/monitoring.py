"""Monitoring: every scoring run (batch CLI, DVC stage, API uploads) over time, its drift and its downloads.

Everything comes from the API (``GET /score/jobs``, ``GET /score/jobs/{id}``, ``GET /model``):
the verdicts, statuses and PSI values are the API's; this page only arranges them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import PurePath

import pandas as pd
import streamlit as st

from api.job_schemas import JobDetail, JobSummary
from api.responses import ModelInfo
from app import client, layout
from app import monitoring_charts as charts
from app.client import ApiError
from app.formatting import count, decimal, percent

RUNS_SHOWN = 50  # newest runs read per page view
HEATMAP_RUNS = 12  # newest runs in the drift heatmap (one detail request each, cached)
HEATMAP_FIELDS = 25  # the fields that moved most; the table of a run lists them all
DRIVERS_NAMED = 6  # in a sentence; the table and the heatmap show the rest
DETAIL_TTL = 3600  # a recorded run does not change
SCORE_FIELD = "proba"
SOURCES = {"cli": "batch CLI", "dvc": "DVC score stage", "api": "API upload"}
BADGES = {  # verdict -> (st.badge colour, icon)
    "ok": ("green", ":material/check_circle:"),
    "watch": ("orange", ":material/visibility:"),
    "alert": ("red", ":material/warning:"),
    "insufficient": ("gray", ":material/hourglass_empty:"),
}
VERDICT_HELP = (
    "The worst drift status among the input fields and the score, against the training profile stored "
    "with the model; 'insufficient' when too few rows were scored to judge."
)


# The list is read on every run of the page (a file just scored must show up at once); a run's
# detail never changes once recorded, so it is cached. ``url`` keys the cache: another API is read anew.
@st.cache_data(ttl=DETAIL_TTL, show_spinner=False, max_entries=500)
def _job(url: str, job_id: str) -> JobDetail:
    return client.score_job(job_id)


def field_labels(info: ModelInfo) -> dict[str, str]:
    """Record field name -> its English label (from ``GET /model``), the score included."""
    return {f.name: f.label_en for f in info.features} | {SCORE_FIELD: "Score (probability)"}


def run_label(job: JobSummary) -> str:
    """Short and unique: start time and the first characters of the run id."""
    return f"{job.started_at:%d %b %H:%M} · {job.id[:6]}"


def verdict_text(verdict: str | None) -> str:
    """The verdict or status as the API says it; runs recorded without drift read ``"none"``."""
    return verdict or "none"


def status_style(value: object) -> str:
    """CSS of a verdict or status cell: the badge colours, as a tinted background."""
    colour = charts.STATUS_COLOURS.get(str(value))
    return f"background-color: {colour}33; color: {colour}; font-weight: 600" if colour else ""


def drivers_text(drivers: Sequence[str], labels: dict[str, str], most: int | None = None) -> str:
    """``"Collision type (col), Light (lum)"``; past ``most`` names, ``"and 3 more"``."""
    named = ", ".join(f"{labels.get(d, d)} ({d})" for d in drivers[:most])
    rest = len(drivers) - len(drivers[:most])
    return f"{named} and {rest} more" if rest > 0 else named


def runs_table(jobs: Sequence[JobSummary], labels: dict[str, str]) -> pd.DataFrame:
    """One row per run, newest first: verdict and drivers, counts, scores, realized metrics."""
    rows = []
    for job in jobs:
        realized = job.realized
        rows.append(
            {
                "Verdict": verdict_text(job.verdict),
                "Started": job.started_at,
                "Source": SOURCES.get(job.source, job.source),
                "Input": job.input_name or "",
                "Model": f"{job.model_name or '?'} v{job.model_version or '?'}",
                "Rows": job.input_rows,
                "Scored": job.scored,
                "Rejected": job.rejected,
                "Predicted severe": job.predicted_severe_share,
                "Mean probability": job.mean_probability,
                "F1": realized.f1 if realized else None,
                "Recall": realized.recall if realized else None,
                "ROC-AUC": realized.roc_auc if realized else None,
                "Drift drivers": drivers_text(job.drivers, labels),
                "Run id": job.id,
            }
        )
    return pd.DataFrame(rows)


def show_runs_table(jobs: Sequence[JobSummary], labels: dict[str, str]) -> None:
    """The runs as a sortable table."""
    percent_column = st.column_config.NumberColumn(format="percent")
    st.dataframe(
        runs_table(jobs, labels).style.map(status_style, subset=["Verdict"]),
        hide_index=True,
        column_config={
            "Verdict": st.column_config.TextColumn(help=VERDICT_HELP),
            "Started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
            "Rows": st.column_config.NumberColumn(format="localized"),
            "Scored": st.column_config.NumberColumn(format="localized"),
            "Rejected": st.column_config.NumberColumn(format="localized"),
            "Predicted severe": percent_column,
            "Mean probability": percent_column,
            "F1": st.column_config.NumberColumn(format="%.3f"),
            "Recall": st.column_config.NumberColumn(format="%.3f"),
            "ROC-AUC": st.column_config.NumberColumn(format="%.3f"),
        },
        key="monitor_runs_table",
    )


def show_timeline(jobs: Sequence[JobSummary], reference: dict[str, float]) -> None:
    """Scores and realized metrics of each run, oldest to newest."""
    ordered = list(reversed(jobs))
    scores = {
        "predicted_severe_share": [j.predicted_severe_share for j in ordered],
        "mean_probability": [j.mean_probability for j in ordered],
    }
    realized = {
        key: [getattr(j.realized, key) if j.realized else None for j in ordered] for key, _, _ in charts.REALIZED_SERIES
    }
    hover = [
        f"{j.started_at:%Y-%m-%d %H:%M} · {SOURCES.get(j.source, j.source)}<br>{j.input_name or 'input'}: "
        f"{count(j.scored)} scored"
        for j in ordered
    ]
    fig = charts.timeline([run_label(j) for j in ordered], hover, scores, realized, reference)
    st.plotly_chart(fig, config={"displaylogo": False}, key="monitor_timeline")
    known = sum(1 for j in jobs if j.realized is not None)
    st.caption(
        f"{count(len(jobs))} runs, oldest on the left. Realized metrics need files that carry the outcomes "
        f"(`severe`): {count(known)} of these did. Dashed lines: the served model on its test year."
    )


def badge_row(job: JobSummary, labels: dict[str, str]) -> None:
    """The verdict as a coloured badge, and the fields that drive it."""
    row = st.container(horizontal=True, vertical_alignment="center")
    if job.verdict is None:
        row.badge("no drift recorded", color="gray", icon=":material/help:")
        return
    colour, icon = BADGES[job.verdict]
    row.badge(f"Drift: {job.verdict}", color=colour, icon=icon)  # type: ignore[arg-type]
    if job.drivers:
        row.markdown(f"driven by **{drivers_text(job.drivers, labels, DRIVERS_NAMED)}**")


def run_cards(job: JobDetail) -> None:
    """Counts and scores of the chosen run."""
    cols = st.columns(5, border=True)
    cols[0].metric("Rows read", count(job.input_rows))
    cols[1].metric("Scored", count(job.scored))
    cols[2].metric("Rejected", count(job.rejected))
    cols[3].metric("Predicted severe", percent(job.predicted_severe_share))
    cols[4].metric(
        "Score PSI",
        decimal(job.score_psi),
        help="How far the distribution of the probabilities moved from the training scores.",
    )


def realized_cards(job: JobDetail, reference: dict[str, float]) -> None:
    """Realized metrics of the chosen run against the served model's test year."""
    if job.realized is None:
        st.caption("This file carried no outcomes (`severe`): no realized metrics.")
        return
    shown = (("F1", "f1"), ("Recall", "recall"), ("Precision", "precision"), ("ROC-AUC", "roc_auc"))
    cols = st.columns(len(shown), border=True)
    for col, (name, key) in zip(cols, shown, strict=True):
        value = getattr(job.realized, key)
        ref = reference.get(key)
        delta = f"{value - ref:+.3f} vs test year" if value is not None and ref is not None else None
        col.metric(f"Realized {name}", decimal(value), delta)


def drift_table(job: JobDetail, labels: dict[str, str]) -> pd.DataFrame:
    """The chosen run's drift, one row per field, largest PSI first."""
    frame = pd.DataFrame(
        [
            {
                "Field": labels.get(row.field, row.field),
                "Name": row.field,
                "PSI": row.psi,
                "Status": verdict_text(row.status),
                "Chi-square": row.statistic,
                "p-value": row.p_value,
            }
            for row in job.drift
        ],
        columns=["Field", "Name", "PSI", "Status", "Chi-square", "p-value"],
    )
    return frame.sort_values("PSI", ascending=False, ignore_index=True)


def show_drift_table(job: JobDetail, labels: dict[str, str]) -> None:
    """Sortable drift table of the chosen run."""
    table = drift_table(job, labels)
    st.dataframe(
        table.style.map(status_style, subset=["Status"]),
        hide_index=True,
        column_config={
            "PSI": st.column_config.ProgressColumn(
                format="%.3f", min_value=0.0, max_value=max(0.5, table["PSI"].max())
            ),
            "Chi-square": st.column_config.NumberColumn(format="%.1f"),
            "p-value": st.column_config.NumberColumn(format="%.2e"),
        },
        height=min(600, 35 * (len(table) + 1) + 3),
        key="monitor_drift_table",
    )
    st.caption(
        "PSI (population stability index) of each field against the training profile; it decides the status. "
        "The chi-square test's p-value is shown, not used: on thousands of rows nearly every field differs "
        "'significantly'. Only the fields named as drivers decide the verdict; a field the API's settings leave "
        "out (the year, which always differs in a new file) is reported but not counted. Click a header to sort."
    )


def show_heatmap(jobs: Sequence[JobSummary], labels: dict[str, str]) -> None:
    """PSI of every field across the newest runs."""
    url = client.api_url()
    details, failed = [], []
    for job in jobs[:HEATMAP_RUNS]:
        try:
            details.append(_job(url, job.id))
        except ApiError as exc:
            failed.append(f"{run_label(job)} ({exc.message})")
    details = [d for d in details if d.drift]
    if not details:
        st.info("No run recorded a drift table yet.", icon=":material/info:")
        return
    fields, psi, status = charts.heatmap_frames(details, labels, HEATMAP_FIELDS)
    runs = [run_label(d) for d in reversed(details)]
    st.plotly_chart(
        charts.drift_heatmap(fields, runs, psi, status), config={"displaylogo": False}, key="monitor_heatmap"
    )
    st.caption(
        f"The newest {count(len(details))} runs with a drift table, oldest on the left; each cell is a field's PSI, "
        f"coloured by its status. The {count(len(fields))} fields that moved most, largest PSI in any run first; "
        "the table above lists every field of a run." + (f" Not read: {'; '.join(failed)}." if failed else "")
    )


def fetcher(url: str) -> Callable[[], bytes]:
    """Deferred download: fetched from the API only when the button is clicked."""
    return lambda: client.download(url if url.startswith(("/", "http://", "https://")) else f"/{url}")


def downloads(job: JobDetail) -> None:
    """The run's files, fetched through the API on click."""
    stem = PurePath(job.input_name or "").name.split(".")[0] or job.id[:8]
    links = job.downloads
    files = [
        ("Scored rows (Parquet)", links.scored_parquet, "scored.parquet", "application/octet-stream", "parquet"),
        ("Scored rows (CSV)", links.scored_csv, "scored.csv", "text/csv", "csv"),
        ("Summary (JSON)", links.summary_json, "summary.json", "application/json", "summary"),
    ]
    if job.rejected:
        files.append(("Rejected cells (CSV)", links.rejects_csv, "rejects.csv", "text/csv", "rejects"))
    row = st.container(horizontal=True)
    for label, url, suffix, mime, key in files:
        row.download_button(
            label,
            data=fetcher(url),
            file_name=f"{stem}-{suffix}",
            mime=mime,
            icon=":material/download:",
            on_click="ignore",
            key=f"monitor_dl_{key}",
        )


def show_run(job: JobDetail, labels: dict[str, str], reference: dict[str, float]) -> None:
    """Everything about the chosen run."""
    model = f"{job.model_name or '?'} v{job.model_version or '?'}"
    st.markdown(
        f"**{job.input_name or 'Input'}**, scored {job.started_at:%Y-%m-%d %H:%M} UTC by the "
        f"{SOURCES.get(job.source, job.source)} with {model} · run `{job.id}`"
    )
    badge_row(job, labels)
    run_cards(job)
    realized_cards(job, reference)
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.markdown("**Drift of each field**")
        if job.drift:
            show_drift_table(job, labels)
        else:
            st.info("This run recorded no drift table.", icon=":material/info:")
    with right:
        st.markdown("**Distribution of the probabilities**")
        if job.score_histogram is not None and job.score_histogram.counts:
            fig = charts.score_histogram(job.score_histogram.edges, job.score_histogram.counts)
            st.plotly_chart(fig, config={"displaylogo": False}, key="monitor_histogram")
        else:
            st.caption("This run recorded no score distribution.")
    st.markdown("**Downloads**")
    downloads(job)


def latest_alert(job: JobSummary, labels: dict[str, str]) -> None:
    """A banner when the newest run is on watch or alert."""
    if job.verdict == "alert":
        st.error(
            f"**The latest run ({run_label(job)}, {job.input_name or 'input'}) raised a drift alert** on "
            f"{drivers_text(job.drivers, labels, DRIVERS_NAMED)}: these fields no longer look like the training data.",
            icon=":material/warning:",
        )
    elif job.verdict == "watch":
        st.warning(
            f"**The latest run ({run_label(job)}) is on watch** for "
            f"{drivers_text(job.drivers, labels, DRIVERS_NAMED)}.",
            icon=":material/visibility:",
        )


status = layout.require_ready(layout.api_status())
info = layout.model_info(status)
labels = field_labels(info)
reference = {k: float(v) for k, v in info.metrics.get("test", {}).items() if isinstance(v, int | float)}

st.title("Monitoring", anchor=False)
st.markdown(
    "Every scoring run (the batch CLI, the DVC `score` stage, files scored here or through the API) is recorded "
    "with its drift against the training data and, when the file carried the outcomes, how the model did."
)
st.button("Refresh", icon=":material/refresh:", key="monitor_refresh", help="Read the runs again.")
try:
    listing = client.score_jobs(limit=RUNS_SHOWN)
except ApiError as exc:
    layout.stop_on_error(exc, "Reading the scoring runs")
jobs = listing.jobs
if not jobs:
    st.info(
        "**No scoring runs yet.** Score a file on the Batch scoring page, with `make score`, or through "
        "`POST /score/file`, and it shows up here.",
        icon=":material/monitoring:",
    )
    st.stop()

latest_alert(jobs[0], labels)
st.subheader("Scoring runs over time", anchor=False)
show_timeline(jobs, reference)
show_runs_table(jobs, labels)
if listing.next_page_token:
    st.caption(f"The newest {count(len(jobs))} runs are shown; older ones are in MLflow.")

st.divider()
st.subheader("One run", anchor=False)
by_id = {j.id: j for j in jobs}
chosen = st.selectbox(
    "Scoring run",
    options=list(by_id),
    format_func=lambda i: (
        f"{run_label(by_id[i])} · {by_id[i].input_name or 'input'} · {verdict_text(by_id[i].verdict)}"
    ),
    key="monitor_run",
)
try:
    detail = _job(client.api_url(), chosen)
except ApiError as exc:
    layout.stop_on_error(exc, f"Reading run {chosen}")
show_run(detail, labels, reference)

st.divider()
st.subheader("Drift across runs", anchor=False)
show_heatmap(jobs, labels)
